//! TorchScript models: loading a serialized module with libtorch (through `tch`), and
//! running its forward on a batch of WIT tensors.
//!
//! A [`Model`] is loaded once per model version and shared (`Arc`) by all its worker
//! lanes: libtorch's `Module::forward` may be called from several threads at once. It
//! runs in eval mode, under `no_grad`, and always on the calling (blocking) thread, never
//! on the async executor.

use std::path::Path;

use tch::{CModule, Device, IValue, Kind};

use crate::runtime::{Dtype, Tensor};

/// Errors of loading and running a model.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    /// The serialized file is not a TorchScript module libtorch can load.
    #[error("cannot load the TorchScript model {file}: {message}")]
    Load { file: String, message: String },
    /// An input tensor is malformed (data length against dtype × shape).
    #[error("bad input tensor: {0}")]
    Input(String),
    /// libtorch raised an error during forward (wrong shape, wrong batch size, …).
    #[error("{0}")]
    Forward(String),
    /// The model returned something that is not tensors.
    #[error("the model returned {0}, which wasmserve cannot pass to a handler")]
    Output(String),
}

/// A loaded TorchScript module.
pub struct Model {
    module: CModule,
    device: Device,
}

impl Model {
    /// Loads `path` onto `device`, in eval mode.
    pub fn load(path: &Path, device: Device) -> Result<Model, ModelError> {
        let mut module = CModule::load_on_device(path, device).map_err(|e| ModelError::Load {
            file: path
                .file_name()
                .map(|f| f.to_string_lossy().into_owned())
                .unwrap_or_default(),
            message: first_line(&e.to_string()),
        })?;
        module.set_eval();
        Ok(Model { module, device })
    }

    /// Runs forward on `inputs` (the model's positional arguments) and returns its
    /// outputs flattened to named tensors: a tensor gives one named "", a tuple or list
    /// its elements named by index, a dict its values named by key, in the dict's order;
    /// nested names are joined with ".".
    pub fn forward(
        &self,
        inputs: &[tch::Tensor],
    ) -> Result<Vec<(String, tch::Tensor)>, ModelError> {
        let args: Vec<IValue> = inputs
            .iter()
            .map(|t| IValue::Tensor(t.to_device(self.device)))
            .collect();
        let out = tch::no_grad(|| self.module.forward_is(&args))
            .map_err(|e| ModelError::Forward(first_line(&e.to_string())))?;
        let mut tensors = Vec::new();
        flatten(out, "", &mut tensors)?;
        Ok(tensors)
    }
}

fn flatten(
    value: IValue,
    name: &str,
    out: &mut Vec<(String, tch::Tensor)>,
) -> Result<(), ModelError> {
    let child = |key: &str| {
        if name.is_empty() {
            key.to_string()
        } else {
            format!("{name}.{key}")
        }
    };
    match value {
        IValue::Tensor(t) => out.push((name.to_string(), t)),
        IValue::Tuple(items) | IValue::GenericList(items) => {
            for (i, item) in items.into_iter().enumerate() {
                flatten(item, &child(&i.to_string()), out)?;
            }
        }
        IValue::TensorList(ts) => out.extend(
            ts.into_iter()
                .enumerate()
                .map(|(i, t)| (child(&i.to_string()), t)),
        ),
        IValue::GenericDict(entries) => {
            for (k, v) in entries {
                let key = match k {
                    IValue::String(s) => s,
                    IValue::Int(i) => i.to_string(),
                    other => format!("{other:?}"),
                };
                flatten(v, &child(&key), out)?;
            }
        }
        other => return Err(ModelError::Output(ivalue_kind(&other).into())),
    }
    Ok(())
}

fn ivalue_kind(v: &IValue) -> &'static str {
    match v {
        IValue::None => "None",
        IValue::Double(_) | IValue::Int(_) | IValue::Bool(_) => "a scalar",
        IValue::String(_) | IValue::StringList(_) => "a string",
        _ => "a value of an unsupported type",
    }
}

/// libtorch error messages carry a C++ backtrace after the first lines; keep the part a
/// user can act on.
/// The useful part of a libtorch error: the last `…Error: …` line of a TorchScript
/// traceback (the cause), else the text before the C++ backtrace.
fn first_line(message: &str) -> String {
    let cut = message
        .find("\nException raised from")
        .unwrap_or(message.len());
    let text = message[..cut].trim();
    text.lines()
        .rev()
        .map(str::trim)
        .find(|l| {
            l.split_once(": ")
                .is_some_and(|(head, _)| head.ends_with("Error") && !head.contains(' '))
        })
        .unwrap_or_else(|| text.lines().next().unwrap_or(text))
        .to_string()
}

/// The libtorch kind of a WIT dtype.
pub fn kind_of(dtype: Dtype) -> Kind {
    match dtype {
        Dtype::Float32 => Kind::Float,
        Dtype::Float64 => Kind::Double,
        Dtype::Float16 => Kind::Half,
        Dtype::Bfloat16 => Kind::BFloat16,
        Dtype::Int64 => Kind::Int64,
        Dtype::Int32 => Kind::Int,
        Dtype::Int16 => Kind::Int16,
        Dtype::Int8 => Kind::Int8,
        Dtype::Uint8 => Kind::Uint8,
        Dtype::Boolean => Kind::Bool,
    }
}

/// The WIT dtype of a libtorch kind, if it has one.
pub fn dtype_of(kind: Kind) -> Option<Dtype> {
    Some(match kind {
        Kind::Float => Dtype::Float32,
        Kind::Double => Dtype::Float64,
        Kind::Half => Dtype::Float16,
        Kind::BFloat16 => Dtype::Bfloat16,
        Kind::Int64 => Dtype::Int64,
        Kind::Int => Dtype::Int32,
        Kind::Int16 => Dtype::Int16,
        Kind::Int8 => Dtype::Int8,
        Kind::Uint8 => Dtype::Uint8,
        Kind::Bool => Dtype::Boolean,
        _ => return None,
    })
}

/// Checks that the data length of `t` is its element count times its element size.
pub fn check_tensor(t: &Tensor) -> Result<(), ModelError> {
    let elem = kind_of(t.dtype).elt_size_in_bytes() as u64;
    let want = t.shape.iter().try_fold(elem, |acc, &d| acc.checked_mul(d));
    if want != Some(t.data.len() as u64) {
        return Err(ModelError::Input(format!(
            "a {:?} tensor of shape {:?} needs {} bytes, the handler gave {}",
            t.dtype,
            t.shape,
            want.map_or("too many".to_string(), |n| n.to_string()),
            t.data.len()
        )));
    }
    Ok(())
}

/// A libtorch tensor holding a copy of `t`'s data.
pub fn to_torch(t: &Tensor) -> Result<tch::Tensor, ModelError> {
    check_tensor(t)?;
    let shape: Vec<i64> = t.shape.iter().map(|&d| d as i64).collect();
    tch::Tensor::f_from_data_size(&t.data, &shape, kind_of(t.dtype))
        .map_err(|e| ModelError::Input(e.to_string()))
}

/// A libtorch tensor over `t`'s own bytes, without copying them (a copy only when the
/// bytes are not aligned for the element type).
///
/// # Safety
///
/// The returned tensor borrows `t.data`: the caller must keep `t` alive and its data
/// unmoved for as long as the returned tensor, and any tensor that may alias it (a
/// model's output can be its input), lives. libtorch may write into the bytes (an
/// in-place op in the model), which `&mut` allows.
pub unsafe fn borrow_torch(t: &mut Tensor) -> Result<tch::Tensor, ModelError> {
    check_tensor(t)?;
    let kind = kind_of(t.dtype);
    let elem = kind.elt_size_in_bytes();
    if t.data.is_empty() || !(t.data.as_ptr() as usize).is_multiple_of(elem) {
        return to_torch(t);
    }
    let shape: Vec<i64> = t.shape.iter().map(|&d| d as i64).collect();
    let mut strides = vec![1i64; shape.len()];
    for i in (0..shape.len().saturating_sub(1)).rev() {
        strides[i] = strides[i + 1] * shape[i + 1].max(1);
    }
    // SAFETY: `check_tensor` proved the buffer holds exactly shape × element size
    // bytes; the caller keeps it alive and unmoved (this function's contract).
    unsafe { tch::Tensor::f_from_blob(t.data.as_mut_ptr(), &shape, &strides, kind, Device::Cpu) }
        .map_err(|e| ModelError::Input(e.to_string()))
}

/// The WIT tensor of a libtorch tensor (moved to the CPU and made contiguous first).
pub fn from_torch(name: &str, t: &tch::Tensor) -> Result<Tensor, ModelError> {
    let kind = t.kind();
    let dtype =
        dtype_of(kind).ok_or_else(|| ModelError::Output(format!("a tensor of kind {kind:?}")))?;
    let t = t.to_device(Device::Cpu).contiguous();
    let numel = t.numel();
    let mut data = vec![0u8; numel * kind.elt_size_in_bytes()];
    t.f_copy_data_u8(&mut data, numel)
        .map_err(|e| ModelError::Output(e.to_string()))?;
    Ok(Tensor {
        name: name.to_string(),
        dtype,
        shape: t.size().iter().map(|&d| d as u64).collect(),
        data,
    })
}
