//! The built-in `base_handler`: tensors in and out as JSON, for models that need no
//! pre- or post-processing.
//!
//! - Input (a JSON body or `data` field), one request's tensor without its batch
//!   dimension, as TorchServe's base handler takes it:
//!   - a nested list of numbers, `[[1, 2], [3, 4]]`, of `input_dtype` (default
//!     `float32`, `model-config.yaml`);
//!   - or `{"shape": [2, 2], "data": [1, 2, 3, 4], "dtype": "float32"}` (`dtype`
//!     optional);
//!   - or `{"inputs": [<tensor>, …]}` for a model with several inputs.
//!
//!   A batch dimension of 1 is added in front (so requests batch on dimension 0).
//! - Output: this request's slice of each output, its batch dimension removed, as a
//!   nested list; several outputs give `{"<name>": <nested list>, …}`. With
//!   `output_format: shaped` each output is `{"shape", "dtype", "data"}` instead.
//!   Non-finite floats are written `NaN`, `Infinity`, `-Infinity`, as TorchServe's
//!   base handler (Python's `json.dumps`) writes them.

use serde_json::Value;
use wasmserve_handler::output::number;
use wasmserve_handler::{Context, Dtype, Error, Handler, Request, Response, Tensor};

struct BaseHandler {
    input_dtype: Dtype,
    shaped: bool,
}

impl Handler for BaseHandler {
    fn init(ctx: &Context) -> Result<Self, String> {
        let input_dtype = match ctx.config_str("input_dtype")? {
            None => Dtype::Float32,
            Some(name) => dtype_named(&name)
                .ok_or_else(|| format!("model-config.yaml: unknown input_dtype {name:?}"))?,
        };
        let shaped = match ctx
            .config_str("output_format")?
            .as_deref()
            .unwrap_or("list")
        {
            "list" => false,
            "shaped" => true,
            other => {
                return Err(format!(
                    "model-config.yaml: output_format {other:?} is not `list` or `shaped`"
                ));
            }
        };
        Ok(BaseHandler {
            input_dtype,
            shaped,
        })
    }

    fn preprocess(&self, req: &Request) -> Result<Vec<Tensor>, Error> {
        let value = req.input_json()?;
        match value {
            Value::Object(mut m) if m.contains_key("inputs") => match m.remove("inputs") {
                Some(Value::Array(items)) => items.iter().map(|v| self.tensor(v)).collect(),
                _ => Err(Error::bad_request("`inputs` must be a list of tensors")),
            },
            v => Ok(vec![self.tensor(&v)?]),
        }
    }

    fn postprocess(&self, _req: &Request, outputs: Vec<Tensor>) -> Result<Response, Error> {
        let mut rendered = Vec::with_capacity(outputs.len());
        for t in &outputs {
            let shape = t.unbatched_shape().to_vec();
            let values = numbers(t)?;
            let value = if self.shaped {
                serde_json::json!({"shape": shape, "dtype": dtype_name(t.dtype), "data": values})
            } else {
                nest(&shape, &values)
            };
            rendered.push((t.name.clone(), value));
        }
        match rendered.len() {
            1 => Response::json(&rendered[0].1),
            _ => Response::json(&rendered.into_iter().collect::<serde_json::Map<_, _>>()),
        }
    }
}

impl BaseHandler {
    /// One tensor from its JSON form, with a batch dimension of 1 added.
    fn tensor(&self, value: &Value) -> Result<Tensor, Error> {
        let (shape, data, dtype) = match value {
            Value::Object(m) => {
                let shape: Vec<u64> = m
                    .get("shape")
                    .and_then(Value::as_array)
                    .and_then(|a| a.iter().map(Value::as_u64).collect())
                    .ok_or_else(|| Error::bad_request("`shape` must be a list of whole numbers"))?;
                let data: Vec<f64> = m
                    .get("data")
                    .and_then(Value::as_array)
                    .and_then(|a| a.iter().map(Value::as_f64).collect())
                    .ok_or_else(|| Error::bad_request("`data` must be a flat list of numbers"))?;
                let dtype = match m.get("dtype").and_then(Value::as_str) {
                    Some(name) => dtype_named(name)
                        .ok_or_else(|| Error::bad_request(format!("unknown dtype {name:?}")))?,
                    None => self.input_dtype,
                };
                (shape, data, dtype)
            }
            Value::Array(_) | Value::Number(_) => {
                let mut shape = Vec::new();
                let mut data = Vec::new();
                flatten(value, 0, &mut shape, &mut data)?;
                (shape, data, self.input_dtype)
            }
            _ => {
                return Err(Error::bad_request(
                    "a tensor is a nested list of numbers or {\"shape\", \"data\"}",
                ));
            }
        };
        let mut batched = vec![1];
        batched.extend(shape);
        from_numbers(&batched, &data, dtype)
    }
}

/// Flattens a rectangular nested list, recording its shape from the first element at
/// each depth.
fn flatten(
    value: &Value,
    depth: usize,
    shape: &mut Vec<u64>,
    out: &mut Vec<f64>,
) -> Result<(), Error> {
    match value {
        Value::Number(n) => {
            if depth != shape.len() {
                return Err(Error::bad_request("the nested list is not rectangular"));
            }
            out.push(n.as_f64().unwrap_or(0.0));
            Ok(())
        }
        Value::Array(items) => {
            if depth == shape.len() && (depth == 0 || out.is_empty()) {
                shape.push(items.len() as u64);
            } else if shape.get(depth) != Some(&(items.len() as u64)) {
                return Err(Error::bad_request("the nested list is not rectangular"));
            }
            items
                .iter()
                .try_for_each(|v| flatten(v, depth + 1, shape, out))
        }
        _ => Err(Error::bad_request("tensors hold numbers only")),
    }
}

/// Rebuilds a nested list of `shape` from row-major values.
fn nest(shape: &[u64], values: &[Value]) -> Value {
    match shape.split_first() {
        None => values.first().cloned().unwrap_or(Value::Null),
        Some((&n, rest)) => {
            let step = rest.iter().product::<u64>() as usize;
            Value::Array(
                (0..n as usize)
                    .map(|i| nest(rest, &values[i * step..(i + 1) * step]))
                    .collect(),
            )
        }
    }
}

fn dtype_named(name: &str) -> Option<Dtype> {
    Some(match name {
        "float32" | "float" => Dtype::Float32,
        "float64" | "double" => Dtype::Float64,
        "int64" | "long" => Dtype::Int64,
        "int32" | "int" => Dtype::Int32,
        "int16" => Dtype::Int16,
        "int8" => Dtype::Int8,
        "uint8" => Dtype::Uint8,
        "bool" | "boolean" => Dtype::Boolean,
        _ => return None,
    })
}

fn dtype_name(dtype: Dtype) -> &'static str {
    match dtype {
        Dtype::Float32 => "float32",
        Dtype::Float64 => "float64",
        Dtype::Float16 => "float16",
        Dtype::Bfloat16 => "bfloat16",
        Dtype::Int64 => "int64",
        Dtype::Int32 => "int32",
        Dtype::Int16 => "int16",
        Dtype::Int8 => "int8",
        Dtype::Uint8 => "uint8",
        Dtype::Boolean => "bool",
    }
}

fn from_numbers(shape: &[u64], data: &[f64], dtype: Dtype) -> Result<Tensor, Error> {
    let t = match dtype {
        Dtype::Float32 => {
            Tensor::from_slice(shape, &data.iter().map(|&x| x as f32).collect::<Vec<_>>())
        }
        Dtype::Float64 => Tensor::from_slice(shape, data),
        Dtype::Int64 => {
            Tensor::from_slice(shape, &data.iter().map(|&x| x as i64).collect::<Vec<_>>())
        }
        Dtype::Int32 => {
            Tensor::from_slice(shape, &data.iter().map(|&x| x as i32).collect::<Vec<_>>())
        }
        Dtype::Int16 => {
            Tensor::from_slice(shape, &data.iter().map(|&x| x as i16).collect::<Vec<_>>())
        }
        Dtype::Int8 => {
            Tensor::from_slice(shape, &data.iter().map(|&x| x as i8).collect::<Vec<_>>())
        }
        Dtype::Uint8 => {
            Tensor::from_slice(shape, &data.iter().map(|&x| x as u8).collect::<Vec<_>>())
        }
        Dtype::Boolean => {
            Tensor::from_slice(shape, &data.iter().map(|&x| x != 0.0).collect::<Vec<_>>())
        }
        Dtype::Float16 | Dtype::Bfloat16 => {
            return Err(Error::bad_request("send half-precision inputs as float32"));
        }
    };
    t.map_err(|e| Error::bad_request(e.message))
}

/// The values of any tensor as JSON numbers.
fn numbers(t: &Tensor) -> Result<Vec<Value>, Error> {
    Ok(match t.dtype {
        // Non-finite values are written as TorchServe's handlers write them (`NaN`,
        // `Infinity`, `-Infinity`), not as `null`.
        Dtype::Float32 => t
            .to_vec::<f32>()?
            .into_iter()
            .map(|x| number(x as f64))
            .collect(),
        Dtype::Float64 => t.to_vec::<f64>()?.into_iter().map(number).collect(),
        Dtype::Int64 => t.to_vec::<i64>()?.into_iter().map(Value::from).collect(),
        Dtype::Int32 => t.to_vec::<i32>()?.into_iter().map(Value::from).collect(),
        Dtype::Int16 => t.to_vec::<i16>()?.into_iter().map(Value::from).collect(),
        Dtype::Int8 => t.to_vec::<i8>()?.into_iter().map(Value::from).collect(),
        Dtype::Uint8 => t.to_vec::<u8>()?.into_iter().map(Value::from).collect(),
        Dtype::Boolean => t.to_vec::<bool>()?.into_iter().map(Value::from).collect(),
        Dtype::Float16 | Dtype::Bfloat16 => {
            return Err(Error::internal(
                "half-precision outputs are not supported; return float32",
            ));
        }
    })
}

wasmserve_handler::export_handler!(BaseHandler);
