//! What a model takes and gives, as its metadata tells clients: the inputs and outputs
//! declared in `model-config.yaml` (Triton's keys), else what the TorchScript
//! `forward` says of itself. Tensor-path requests are matched to the forward's
//! positional arguments by these names.
//!
//! ```yaml
//! input:                      # in the forward's argument order
//!   - name: INPUT__0
//!     data_type: TYPE_FP32    # Triton's TYPE_* names, or the protocol's (FP32)
//!     dims: [3, 224, 224]     # without the batch dimension; -1 = any size
//! output:                     # in the order the forward returns them
//!   - name: OUTPUT__0
//!     data_type: TYPE_FP32
//!     dims: [1000]
//! ```
//!
//! A key `input` or `output` whose value is not a list stays the handler's (as
//! `text_classifier`'s `output: probabilities`).
//!
//! Every tensor carries a leading batch dimension (the server batches on dimension
//! 0), so a client sees the shape `[-1] + dims`. Without a declaration, the inputs are
//! the forward's arguments (a tensor as FP32 of unknown shape, `int` as INT64,
//! `float` as FP64, `bool` as BOOL) and the outputs one FP32 `OUTPUT__0` of unknown
//! shape: declare them for exact metadata.

use super::tensor::Datatype;
use crate::schema::{ArgType, ForwardSchema};

/// One declared input or output.
#[derive(Clone, Debug, PartialEq)]
pub struct TensorSpec {
    pub name: String,
    pub datatype: Datatype,
    /// The shape without the batch dimension; `-1` where any size goes.
    pub dims: Vec<i64>,
}

impl TensorSpec {
    /// The shape a client sees: the batch dimension, then `dims`.
    pub fn shape(&self) -> Vec<i64> {
        std::iter::once(-1)
            .chain(self.dims.iter().copied())
            .collect()
    }
}

/// A model's inputs and outputs, and whether each list was declared.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Signature {
    pub inputs: Vec<TensorSpec>,
    pub outputs: Vec<TensorSpec>,
    pub inputs_declared: bool,
    pub outputs_declared: bool,
}

/// The name of the `i`-th output when none is declared (Triton's PyTorch convention).
pub fn default_output_name(i: usize) -> String {
    format!("OUTPUT__{i}")
}

impl Signature {
    /// The declared lists, completed from the forward's own signature.
    pub fn new(
        inputs: Option<Vec<TensorSpec>>,
        outputs: Option<Vec<TensorSpec>>,
        schema: Option<&ForwardSchema>,
    ) -> Signature {
        let (inputs_declared, outputs_declared) = (inputs.is_some(), outputs.is_some());
        let inputs = inputs.unwrap_or_else(|| match schema {
            Some(s) => s
                .args
                .iter()
                .filter(|a| a.ty.servable())
                .map(|a| TensorSpec {
                    name: a.name.clone(),
                    datatype: match a.ty {
                        ArgType::Int => Datatype::I64,
                        ArgType::Float => Datatype::F64,
                        ArgType::Bool => Datatype::Bool,
                        _ => Datatype::F32,
                    },
                    dims: if a.ty.is_scalar() { vec![] } else { vec![-1] },
                })
                .collect(),
            None => vec![TensorSpec {
                name: "INPUT__0".into(),
                datatype: Datatype::F32,
                dims: vec![-1],
            }],
        });
        let outputs = outputs.unwrap_or_else(|| {
            vec![TensorSpec {
                name: default_output_name(0),
                datatype: Datatype::F32,
                dims: vec![-1],
            }]
        });
        Signature {
            inputs,
            outputs,
            inputs_declared,
            outputs_declared,
        }
    }

    /// The name of the forward's `i`-th output (`produced`: the name the server gave
    /// it, "" for a lone tensor, the index or dict key otherwise).
    pub fn output_name(&self, i: usize, produced: &str) -> String {
        if let Some(spec) = self.outputs.get(i).filter(|_| self.outputs_declared) {
            return spec.name.clone();
        }
        match produced {
            "" => default_output_name(i),
            p if p.chars().all(|c| c.is_ascii_digit() || c == '.') => default_output_name(i),
            p => p.to_string(),
        }
    }
}

/// Parses a `model-config.yaml` `input:` or `output:` list (`key` names it in errors).
pub fn parse_specs(key: &str, value: &serde_json::Value) -> Result<Vec<TensorSpec>, String> {
    let list = value
        .as_array()
        .ok_or_else(|| format!("{key} must be a list of {{name, data_type, dims}}"))?;
    let mut specs: Vec<TensorSpec> = Vec::with_capacity(list.len());
    for (i, item) in list.iter().enumerate() {
        let at = format!("{key}[{i}]");
        let obj = item
            .as_object()
            .ok_or_else(|| format!("{at} must be a mapping with name, data_type and dims"))?;
        if let Some(other) = obj
            .keys()
            .find(|k| !matches!(k.as_str(), "name" | "data_type" | "dims"))
        {
            return Err(format!(
                "{at}: unknown key {other:?} (the keys are name, data_type, dims)"
            ));
        }
        let name = obj
            .get("name")
            .and_then(|n| n.as_str())
            .filter(|n| !n.is_empty() && n.len() <= 128)
            .ok_or_else(|| format!("{at}.name must be a non-empty string"))?
            .to_string();
        if specs.iter().any(|s| s.name == name) {
            return Err(format!("{at}: the name {name:?} is used twice"));
        }
        let type_name = obj
            .get("data_type")
            .and_then(|t| t.as_str())
            .ok_or_else(|| format!("{at}.data_type must be a string such as TYPE_FP32"))?;
        let datatype = parse_datatype(type_name)
            .ok_or_else(|| format!("{at}.data_type: unknown type {type_name:?}"))?;
        let dims = match obj.get("dims") {
            None => Vec::new(),
            Some(d) => d
                .as_array()
                .and_then(|a| {
                    a.iter()
                        .map(|x| x.as_i64().filter(|&n| n >= -1))
                        .collect::<Option<Vec<i64>>>()
                })
                .ok_or_else(|| format!("{at}.dims must be a list of sizes (-1: any)"))?,
        };
        specs.push(TensorSpec {
            name,
            datatype,
            dims,
        });
    }
    Ok(specs)
}

/// A datatype by Triton's config name (`TYPE_FP32`, `TYPE_STRING`) or the protocol's
/// (`FP32`, `BYTES`).
pub fn parse_datatype(name: &str) -> Option<Datatype> {
    match name.strip_prefix("TYPE_") {
        Some("STRING") => Some(Datatype::Bytes),
        Some(rest) => Datatype::from_name(rest).filter(|d| *d != Datatype::Bytes),
        None => Datatype::from_name(name),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn parses_triton_style_specs() {
        let specs = parse_specs(
            "input",
            &json!([{"name": "x", "data_type": "TYPE_FP32", "dims": [3, -1]},
                    {"name": "y", "data_type": "INT64"}]),
        )
        .unwrap();
        assert_eq!(specs[0].shape(), vec![-1, 3, -1]);
        assert_eq!(specs[1].datatype, Datatype::I64);
        assert_eq!(parse_datatype("TYPE_STRING"), Some(Datatype::Bytes));
    }

    #[test]
    fn refuses_what_it_cannot_read() {
        for bad in [
            json!({"name": "x"}),
            json!([{"name": "x", "data_type": "TYPE_FLOAT"}]),
            json!([{"name": "x", "data_type": "FP32", "dims": [-2]}]),
            json!([{"name": "x", "data_type": "FP32", "shape": [1]}]),
            json!([{"name": "x", "data_type": "FP32"}, {"name": "x", "data_type": "FP32"}]),
        ] {
            assert!(parse_specs("input", &bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn undeclared_outputs_get_triton_names() {
        let sig = Signature::new(None, None, None);
        assert_eq!(sig.output_name(0, ""), "OUTPUT__0");
        assert_eq!(sig.output_name(1, "1"), "OUTPUT__1");
        assert_eq!(sig.output_name(0, "boxes"), "boxes");
    }
}
