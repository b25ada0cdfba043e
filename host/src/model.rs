//! TorchScript models: loading a serialized module with libtorch (through `tch`), and
//! running its forward on a batch of WIT tensors.
//!
//! A [`Model`] is loaded once per model version and device and shared (`Arc`) by the
//! worker lanes on that device: libtorch's `Module::forward` may be called from several
//! threads at once. It runs in eval mode, under `no_grad`, and always on the calling
//! (blocking) thread, never on the async executor. On a GPU, a batch's inputs are
//! copied to the device once (from pinned host memory, without blocking the host) and
//! the outputs back to the host once, right after the forward: what is split per
//! request and handed to handlers is host memory.

use std::path::Path;

use tch::{CModule, Device, IValue, Kind};

pub mod optimize;
pub use optimize::JitOptimize;

use crate::sandbox::{Dtype, Tensor};
use crate::schema::{ArgType, ForwardSchema};

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
    /// The request's inputs do not fit the forward's arguments (their number, or a
    /// scalar argument given a tensor of more than one value): the client's to fix.
    #[error("{0}")]
    Arguments(String),
}

/// A loaded TorchScript module.
pub struct Model {
    module: CModule,
    device: Device,
    /// Its `forward`'s arguments, when the file says (see [`crate::schema`]).
    schema: Option<ForwardSchema>,
    /// `jitOptimize: fuse` on the CPU: forwards run with the oneDNN fuser on.
    fused: bool,
}

impl Model {
    /// Loads `path` onto `device`, in eval mode. A module whose `forward` takes an
    /// argument that a handler cannot pass is refused here, with the reason.
    pub fn load(path: &Path, device: Device) -> Result<Model, ModelError> {
        Model::load_with(path, device, JitOptimize::Off)
    }

    /// [`Model::load`], then TorchScript's optimizations as `jit` says
    /// ([`optimize`]).
    pub fn load_with(path: &Path, device: Device, jit: JitOptimize) -> Result<Model, ModelError> {
        let file = path
            .file_name()
            .map(|f| f.to_string_lossy().into_owned())
            .unwrap_or_default();
        crate::fsutil::check_regular_file(path).map_err(|e| ModelError::Load {
            file: file.clone(),
            message: e.to_string(),
        })?;
        let schema = crate::schema::read(path);
        if let Some(why) = schema.as_ref().and_then(ForwardSchema::unservable) {
            return Err(ModelError::Load { file, message: why });
        }
        if schema.is_none() {
            tracing::debug!("{file}: no forward signature found; its inputs are passed as tensors");
        }
        let mut module = CModule::load_on_device(path, device).map_err(|e| ModelError::Load {
            file: file.clone(),
            message: torch_error("loading the model", &e),
        })?;
        module.set_eval();
        let jit = jit.on(device);
        let module = optimize::apply(module, jit).map_err(|e| ModelError::Load {
            file,
            message: format!("jitOptimize: {jit:?} failed: {}", first_line(&e)),
        })?;
        Ok(Model {
            module,
            device,
            schema,
            fused: jit == JitOptimize::Fuse,
        })
    }

    /// The device its weights are on.
    pub fn device(&self) -> Device {
        self.device
    }

    /// `t` on the model's device: itself on the CPU; on a GPU one copy from pinned host
    /// memory, queued on the device's stream without waiting for it.
    fn on_device(&self, t: &tch::Tensor) -> Result<tch::Tensor, ModelError> {
        if self.device == Device::Cpu || t.device() == self.device {
            return Ok(t.shallow_clone());
        }
        let pinned = t
            .f_pin_memory(self.device)
            .map_err(|e| ModelError::Input(torch_error("pinning an input", &e)))?;
        pinned
            .f_to_device_(self.device, pinned.kind(), true, false)
            .map_err(|e| ModelError::Input(torch_error("copying an input to the GPU", &e)))
    }

    /// The forward's signature, when known.
    pub fn schema(&self) -> Option<&ForwardSchema> {
        self.schema.as_ref()
    }

    /// The forward's argument for input `i`: a tensor, or a number from a one-element
    /// tensor where the signature says `int`, `float` or `bool`.
    fn argument(&self, i: usize, t: &tch::Tensor) -> Result<IValue, ModelError> {
        let arg = self.schema.as_ref().and_then(|s| s.args.get(i));
        let Some(arg) = arg.filter(|a| a.ty.is_scalar()) else {
            return Ok(IValue::Tensor(self.on_device(t)?));
        };
        if t.numel() != 1 {
            return Err(ModelError::Arguments(format!(
                "the model's `{}` takes one number, the request gave a tensor of shape {:?}",
                arg.spelled,
                t.size()
            )));
        }
        let t = t.view([-1]);
        Ok(match arg.ty {
            ArgType::Int => IValue::Int(t.int64_value(&[0])),
            ArgType::Float => IValue::Double(t.double_value(&[0])),
            _ => IValue::Bool(t.int64_value(&[0]) != 0),
        })
    }

    /// Checks the number of inputs against the forward's signature.
    fn check_count(&self, n: usize) -> Result<(), ModelError> {
        let Some(s) = &self.schema else {
            return Ok(());
        };
        if n < s.required() || n > s.args.len() {
            let wanted = if s.required() == s.args.len() {
                s.args.len().to_string()
            } else {
                format!("{} to {}", s.required(), s.args.len())
            };
            return Err(ModelError::Arguments(format!(
                "the model's {} takes {wanted} input(s); the request gave {n}",
                s.signature()
            )));
        }
        Ok(())
    }

    /// Runs forward on `inputs` (the model's positional arguments) and returns its
    /// outputs flattened to named tensors: a tensor gives one named "", a tuple or list
    /// its elements named by index, a dict its values named by key, in the dict's order;
    /// nested names are joined with "."; all on the host.
    pub fn forward(
        &self,
        inputs: &[tch::Tensor],
    ) -> Result<Vec<(String, tch::Tensor)>, ModelError> {
        self.check_count(inputs.len())?;
        let args: Vec<IValue> = inputs
            .iter()
            .enumerate()
            .map(|(i, t)| self.argument(i, t))
            .collect::<Result<_, _>>()?;
        let forward = || tch::no_grad(|| self.module.forward_is(&args));
        let out = optimize::run_forward(self.fused, forward)
            .map_err(|e| ModelError::Forward(torch_error("the forward", &e)))?;
        let mut tensors = Vec::new();
        flatten(out, "", &mut tensors)?;
        if self.device != Device::Cpu {
            for (_, t) in &mut tensors {
                if t.device() != Device::Cpu {
                    *t = t
                        .f_to_device(Device::Cpu)
                        .map_err(|e| ModelError::Forward(torch_error("copying an output", &e)))?;
                }
            }
        }
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

/// The part of a libtorch error a client sees ([`first_line`]); the whole message, C++
/// backtrace and all, goes to the server's log. Every libtorch error on a request path
/// passes here.
pub fn torch_error(what: &str, e: &tch::TchError) -> String {
    let full = e.to_string();
    let short = first_line(&full);
    if short.len() < full.len() {
        tracing::warn!("libtorch failed in {what}: {full}");
    }
    short
}

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

/// Checks that the data length of `t` is its element count times its element size, and
/// that every dimension fits libtorch's (signed 64-bit) sizes.
pub fn check_tensor(t: &Tensor) -> Result<(), ModelError> {
    if let Some(d) = t.shape.iter().find(|&&d| d > i64::MAX as u64) {
        return Err(ModelError::Input(format!(
            "a tensor of shape {:?} has a dimension of {d}, larger than libtorch allows ({})",
            t.shape,
            i64::MAX
        )));
    }
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
        .map_err(|e| ModelError::Input(torch_error("making an input tensor", &e)))
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
        .map_err(|e| ModelError::Input(torch_error("lending an input tensor", &e)))
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
        .map_err(|e| ModelError::Output(torch_error("copying an output", &e)))?;
    Ok(Tensor {
        name: name.to_string(),
        dtype,
        shape: t.size().iter().map(|&d| d as u64).collect(),
        data,
    })
}
