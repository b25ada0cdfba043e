//! The Open Inference Protocol's tensors on the wire: the JSON request and response
//! bodies, and the binary tensor data extension (a JSON header of
//! `Inference-Header-Content-Length` bytes, then the raw tensors in the order the
//! header names them, each `binary_data_size` bytes; little-endian, row-major, BOOL one
//! byte, BYTES elements as a 4-byte little-endian length and the bytes).
//!
//! Everything a client sends is checked before it is used: datatypes, that shape ×
//! datatype equals the data's length, that binary sizes add up to the body exactly,
//! that the header length fits the body. Each mistake is a [`Error::InvalidInput`]
//! saying which tensor and what.

use serde::Deserialize;
use serde::de::{DeserializeSeed, SeqAccess, Visitor};
use serde_json::value::RawValue;
use serde_json::{Map, Value};

use crate::core::Error;
use crate::core::tensor::Datatype;

/// A tensor's elements: fixed-size values as their little-endian bytes, or BYTES
/// elements.
#[derive(Clone, Debug, PartialEq)]
pub enum Data {
    Raw(Vec<u8>),
    Bytes(Vec<Vec<u8>>),
}

/// One input tensor of a request, or one output of a response.
#[derive(Clone, Debug, PartialEq)]
pub struct Tensor {
    pub name: String,
    pub datatype: Datatype,
    pub shape: Vec<u64>,
    pub parameters: Map<String, Value>,
    pub data: Data,
}

impl Tensor {
    /// The number of elements its shape says.
    pub fn elements(&self) -> u64 {
        self.shape.iter().product()
    }
}

/// An output the client asked for.
#[derive(Clone, Debug, PartialEq)]
pub struct Requested {
    pub name: String,
    /// `parameters.binary_data`, when given.
    pub binary: Option<bool>,
}

/// A decoded inference request.
#[derive(Clone, Debug, PartialEq)]
pub struct InferRequest {
    pub id: Option<String>,
    pub parameters: Map<String, Value>,
    pub inputs: Vec<Tensor>,
    /// Empty: every output.
    pub outputs: Vec<Requested>,
}

impl InferRequest {
    /// Whether outputs not asked for by name (or asked for without `binary_data`) are
    /// sent binary: the request's `binary_data_output`.
    pub fn binary_by_default(&self) -> bool {
        self.parameters
            .get("binary_data_output")
            .and_then(Value::as_bool)
            .unwrap_or(false)
    }
}

#[derive(Deserialize)]
struct WireRequest<'a> {
    #[serde(default)]
    id: Option<String>,
    #[serde(default)]
    parameters: Option<Map<String, Value>>,
    #[serde(borrow)]
    inputs: Vec<WireInput<'a>>,
    #[serde(default)]
    outputs: Option<Vec<WireOutput>>,
}

#[derive(Deserialize)]
struct WireInput<'a> {
    name: String,
    shape: Vec<i64>,
    datatype: String,
    #[serde(default)]
    parameters: Option<Map<String, Value>>,
    #[serde(default, borrow)]
    data: Option<&'a RawValue>,
}

#[derive(Deserialize)]
struct WireOutput {
    name: String,
    #[serde(default)]
    parameters: Option<Map<String, Value>>,
}

pub fn invalid(message: impl Into<String>) -> Error {
    Error::InvalidInput(message.into())
}

/// Parameters are a map of strings, numbers and booleans.
pub fn check_parameters(what: &str, p: &Map<String, Value>) -> Result<(), Error> {
    match p
        .iter()
        .find(|(_, v)| !(v.is_string() || v.is_number() || v.is_boolean()))
    {
        Some((k, _)) => Err(invalid(format!(
            "{what} parameter {k:?} must be a string, a number or a boolean"
        ))),
        None => Ok(()),
    }
}

/// Decodes a request body; `header_length` is `Inference-Header-Content-Length` when
/// the body carries binary tensors after its JSON.
pub fn decode_request(body: &[u8], header_length: Option<usize>) -> Result<InferRequest, Error> {
    let (json, mut binary) = match header_length {
        Some(n) if n > body.len() => {
            return Err(invalid(format!(
                "Inference-Header-Content-Length is {n} but the body has only {} bytes",
                body.len()
            )));
        }
        Some(n) => body.split_at(n),
        None => (body, &[][..]),
    };
    let wire: WireRequest = serde_json::from_slice(json)
        .map_err(|e| invalid(format!("the request is not a valid inference request: {e}")))?;
    let parameters = wire.parameters.unwrap_or_default();
    check_parameters("the request's", &parameters)?;
    let mut inputs = Vec::with_capacity(wire.inputs.len());
    for input in wire.inputs {
        let at = format!("input {:?}", input.name);
        let (datatype, shape, elements) =
            input_header(&at, &inputs, &input.name, &input.datatype, &input.shape)?;
        let params = input.parameters.unwrap_or_default();
        check_parameters(&at, &params)?;
        let binary_size = match params.get("binary_data_size") {
            None => None,
            Some(v) => Some(v.as_u64().ok_or_else(|| {
                invalid(format!(
                    "{at}: binary_data_size must be a whole number of bytes"
                ))
            })? as usize),
        };
        let data = match (input.data, binary_size) {
            (Some(_), Some(_)) => {
                return Err(invalid(format!(
                    "{at} has both data and binary_data_size: send one"
                )));
            }
            (None, None) => {
                return Err(invalid(format!(
                    "{at} has no data (nor binary_data_size for binary data after the header)"
                )));
            }
            (Some(raw), None) => json_data(&at, datatype, elements, raw)?,
            (None, Some(size)) => {
                if size > binary.len() {
                    return Err(invalid(format!(
                        "{at}: binary_data_size is {size} bytes but only {} are left in the body",
                        binary.len()
                    )));
                }
                let (mine, rest) = binary.split_at(size);
                binary = rest;
                binary_data(&at, datatype, elements, mine)?
            }
        };
        inputs.push(Tensor {
            name: input.name,
            datatype,
            shape,
            parameters: params,
            data,
        });
    }
    if !binary.is_empty() {
        return Err(invalid(format!(
            "the body has {} bytes after the tensors its header declares",
            binary.len()
        )));
    }
    let outputs = wire
        .outputs
        .unwrap_or_default()
        .into_iter()
        .map(|o| {
            let p = o.parameters.unwrap_or_default();
            check_parameters(&format!("output {:?}", o.name), &p)?;
            Ok(Requested {
                binary: p.get("binary_data").and_then(Value::as_bool),
                name: o.name,
            })
        })
        .collect::<Result<Vec<_>, Error>>()?;
    Ok(InferRequest {
        id: wire.id,
        parameters,
        inputs,
        outputs,
    })
}

/// Checks an input's name (not given twice), datatype and shape; its datatype, shape
/// and number of elements. `at` names it in errors.
pub fn input_header(
    at: &str,
    earlier: &[Tensor],
    name: &str,
    datatype: &str,
    shape: &[i64],
) -> Result<(Datatype, Vec<u64>, u64), Error> {
    if earlier.iter().any(|t| t.name == name) {
        return Err(invalid(format!("{at} is given twice")));
    }
    let datatype = Datatype::from_name(datatype).ok_or_else(|| {
        invalid(format!(
            "{at} has the unknown datatype {datatype:?}; the datatypes are {}",
            Datatype::ALL.map(Datatype::name).join(", ")
        ))
    })?;
    let shape = shape
        .iter()
        .map(|&d| u64::try_from(d).ok())
        .collect::<Option<Vec<u64>>>()
        .ok_or_else(|| invalid(format!("{at} has a negative dimension in its shape")))?;
    let elements = shape
        .iter()
        .try_fold(1u64, |n, &d| n.checked_mul(d))
        .ok_or_else(|| invalid(format!("{at}: its shape {shape:?} is too large")))?;
    Ok((datatype, shape, elements))
}

/// Appends a tensor's elements as binary data (the binary tensor extension's, and
/// gRPC's `raw_*_contents`): fixed-size values as they are, BYTES elements each as a
/// 4-byte little-endian length and the bytes.
pub fn append_binary(data: &Data, out: &mut Vec<u8>) {
    match data {
        Data::Raw(raw) => out.extend_from_slice(raw),
        Data::Bytes(items) => {
            for item in items {
                out.extend_from_slice(&(item.len() as u32).to_le_bytes());
                out.extend_from_slice(item);
            }
        }
    }
}

/// The elements of binary data: exactly `elements` values of `datatype`.
pub fn binary_data(
    at: &str,
    datatype: Datatype,
    elements: u64,
    bytes: &[u8],
) -> Result<Data, Error> {
    match datatype.size() {
        Some(size) => {
            let want = elements.checked_mul(size as u64);
            if want != Some(bytes.len() as u64) {
                return Err(invalid(format!(
                    "{at}: its binary data (binary_data_size, or raw_input_contents over gRPC) is {} bytes, but {elements} {datatype} elements take {}",
                    bytes.len(),
                    want.map_or("more".to_string(), |w| w.to_string())
                )));
            }
            if datatype == Datatype::Bool && bytes.iter().any(|&b| b > 1) {
                return Err(invalid(format!("{at}: BOOL elements must be bytes 0 or 1")));
            }
            Ok(Data::Raw(bytes.to_vec()))
        }
        None => {
            let mut items = Vec::new();
            let mut rest = bytes;
            while !rest.is_empty() {
                let Some((len, tail)) = rest.split_first_chunk::<4>() else {
                    return Err(invalid(format!(
                        "{at}: a BYTES element's 4-byte length is cut short"
                    )));
                };
                let len = u32::from_le_bytes(*len) as usize;
                if len > tail.len() {
                    return Err(invalid(format!(
                        "{at}: a BYTES element says {len} bytes but {} are left",
                        tail.len()
                    )));
                }
                items.push(tail[..len].to_vec());
                rest = &tail[len..];
            }
            if items.len() as u64 != elements {
                return Err(invalid(format!(
                    "{at}: its shape says {elements} elements but the binary data holds {}",
                    items.len()
                )));
            }
            Ok(Data::Bytes(items))
        }
    }
}

/// The elements of JSON `data` (flat or nested, row-major): exactly `elements` values.
fn json_data(at: &str, datatype: Datatype, elements: u64, raw: &RawValue) -> Result<Data, Error> {
    // Nothing is reserved on the shape's word: the count is checked as elements come.
    let mut sink = Sink {
        datatype,
        raw: Vec::new(),
        bytes: Vec::new(),
        count: 0,
        limit: elements,
    };
    let mut de = serde_json::Deserializer::from_str(raw.get());
    Flatten(&mut sink)
        .deserialize(&mut de)
        .map_err(|e| invalid(format!("{at}: {e}")))?;
    if sink.count != elements {
        return Err(invalid(format!(
            "{at}: its shape says {elements} elements but data holds {}",
            sink.count
        )));
    }
    Ok(match datatype {
        Datatype::Bytes => Data::Bytes(sink.bytes),
        _ => Data::Raw(sink.raw),
    })
}

/// Where JSON elements go as they are read.
struct Sink {
    datatype: Datatype,
    raw: Vec<u8>,
    bytes: Vec<Vec<u8>>,
    count: u64,
    limit: u64,
}

impl Sink {
    fn push<E: serde::de::Error>(&mut self, v: Element) -> Result<(), E> {
        self.count += 1;
        if self.count > self.limit {
            return Err(E::custom(format!(
                "data holds more elements than its shape says ({})",
                self.limit
            )));
        }
        let d = self.datatype;
        let wrong = || E::custom(format!("{} is not a {d} element", v.describe()));
        macro_rules! int {
            ($t:ty) => {{
                let n: $t = match v {
                    Element::I(i) => <$t>::try_from(i).map_err(|_| wrong())?,
                    Element::U(u) => <$t>::try_from(u).map_err(|_| wrong())?,
                    _ => return Err(wrong()),
                };
                self.raw.extend_from_slice(&n.to_le_bytes());
            }};
        }
        let float = || match v {
            Element::I(i) => Some(i as f64),
            Element::U(u) => Some(u as f64),
            Element::F(f) => Some(f),
            _ => None,
        };
        match d {
            Datatype::Bool => match v {
                Element::B(b) => self.raw.push(b as u8),
                _ => return Err(wrong()),
            },
            Datatype::U8 => int!(u8),
            Datatype::U16 => int!(u16),
            Datatype::U32 => int!(u32),
            Datatype::U64 => int!(u64),
            Datatype::I8 => int!(i8),
            Datatype::I16 => int!(i16),
            Datatype::I32 => int!(i32),
            Datatype::I64 => int!(i64),
            Datatype::F16 => {
                let f = float().ok_or_else(wrong)?;
                self.raw
                    .extend_from_slice(&half::f16::from_f64(f).to_le_bytes());
            }
            Datatype::Bf16 => {
                let f = float().ok_or_else(wrong)?;
                self.raw
                    .extend_from_slice(&half::bf16::from_f64(f).to_le_bytes());
            }
            Datatype::F32 => {
                let f = float().ok_or_else(wrong)?;
                self.raw.extend_from_slice(&(f as f32).to_le_bytes());
            }
            Datatype::F64 => {
                let f = float().ok_or_else(wrong)?;
                self.raw.extend_from_slice(&f.to_le_bytes());
            }
            Datatype::Bytes => match v {
                Element::S(s) => self.bytes.push(s.into_bytes()),
                _ => return Err(wrong()),
            },
        }
        Ok(())
    }
}

/// One JSON scalar.
enum Element {
    B(bool),
    I(i64),
    U(u64),
    F(f64),
    S(String),
}

impl Element {
    fn describe(&self) -> String {
        match self {
            Element::B(b) => b.to_string(),
            Element::I(i) => i.to_string(),
            Element::U(u) => u.to_string(),
            Element::F(f) => f.to_string(),
            Element::S(_) => "a string".into(),
        }
    }
}

/// Reads a scalar or (nested) arrays of scalars into the sink, flattening.
struct Flatten<'s>(&'s mut Sink);

impl<'de> DeserializeSeed<'de> for Flatten<'_> {
    type Value = ();
    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Flatten<'_> {
    type Value = ();
    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("data: elements, or arrays of them")
    }
    fn visit_bool<E: serde::de::Error>(self, v: bool) -> Result<(), E> {
        self.0.push(Element::B(v))
    }
    fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<(), E> {
        self.0.push(Element::I(v))
    }
    fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<(), E> {
        self.0.push(Element::U(v))
    }
    fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<(), E> {
        self.0.push(Element::F(v))
    }
    fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<(), E> {
        self.0.push(Element::S(v.to_string()))
    }
    fn visit_string<E: serde::de::Error>(self, v: String) -> Result<(), E> {
        self.0.push(Element::S(v))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while seq.next_element_seed(Flatten(&mut *self.0))?.is_some() {}
        Ok(())
    }
}

/// A response ready to send: its body, and the header length when binary tensors
/// follow the JSON.
pub struct Encoded {
    pub body: Vec<u8>,
    pub header_length: Option<usize>,
}

/// Encodes a response: `binary[i]` says whether output `i` goes as binary data.
pub fn encode_response(
    model_name: &str,
    model_version: &str,
    id: Option<&str>,
    outputs: &[Tensor],
    binary: &[bool],
) -> Encoded {
    let mut json_outputs = Vec::with_capacity(outputs.len());
    let mut tail: Vec<u8> = Vec::new();
    for (t, &bin) in outputs.iter().zip(binary) {
        let mut parameters = t.parameters.clone();
        let mut out = Map::new();
        out.insert("name".into(), t.name.clone().into());
        out.insert("datatype".into(), t.datatype.name().into());
        out.insert("shape".into(), t.shape.clone().into());
        if bin {
            let before = tail.len();
            append_binary(&t.data, &mut tail);
            parameters.insert("binary_data_size".into(), (tail.len() - before).into());
        } else {
            out.insert("data".into(), json_elements(t));
        }
        if !parameters.is_empty() {
            out.insert("parameters".into(), parameters.into());
        }
        json_outputs.push(Value::Object(out));
    }
    let mut head = Map::new();
    head.insert("model_name".into(), model_name.into());
    head.insert("model_version".into(), model_version.into());
    if let Some(id) = id {
        head.insert("id".into(), id.into());
    }
    head.insert("outputs".into(), json_outputs.into());
    let mut body = serde_json::to_vec(&Value::Object(head)).unwrap_or_default();
    let header_length = (!tail.is_empty() || binary.iter().any(|&b| b)).then_some(body.len());
    body.extend_from_slice(&tail);
    Encoded {
        body,
        header_length,
    }
}

/// A tensor's elements as a flat JSON array. BYTES elements that are not UTF-8 are
/// sent with their bytes mapped one to one onto the first 256 code points (ask for
/// binary data to get them exactly).
fn json_elements(t: &Tensor) -> Value {
    fn each<const N: usize>(raw: &[u8], f: impl Fn([u8; N]) -> Value) -> Value {
        Value::Array(
            raw.chunks_exact(N)
                .map(|c| f(c.try_into().unwrap_or([0; N])))
                .collect(),
        )
    }
    let finite = |f: f64| {
        serde_json::Number::from_f64(f)
            .map(Value::Number)
            .unwrap_or(Value::Null)
    };
    match &t.data {
        Data::Bytes(items) => Value::Array(
            items
                .iter()
                .map(|b| match std::str::from_utf8(b) {
                    Ok(s) => s.into(),
                    Err(_) => b.iter().map(|&c| c as char).collect::<String>().into(),
                })
                .collect(),
        ),
        Data::Raw(raw) => match t.datatype {
            Datatype::Bool => Value::Array(raw.iter().map(|&b| (b != 0).into()).collect()),
            Datatype::U8 => Value::Array(raw.iter().map(|&b| b.into()).collect()),
            Datatype::I8 => Value::Array(raw.iter().map(|&b| (b as i8).into()).collect()),
            Datatype::U16 => each(raw, |b| u16::from_le_bytes(b).into()),
            Datatype::I16 => each(raw, |b| i16::from_le_bytes(b).into()),
            Datatype::U32 => each(raw, |b| u32::from_le_bytes(b).into()),
            Datatype::I32 => each(raw, |b| i32::from_le_bytes(b).into()),
            Datatype::U64 => each(raw, |b| u64::from_le_bytes(b).into()),
            Datatype::I64 => each(raw, |b| i64::from_le_bytes(b).into()),
            Datatype::F16 => each(raw, |b| finite(half::f16::from_le_bytes(b).to_f64())),
            Datatype::Bf16 => each(raw, |b| finite(half::bf16::from_le_bytes(b).to_f64())),
            Datatype::F32 => each(raw, |b| finite(f32::from_le_bytes(b) as f64)),
            Datatype::F64 => each(raw, |b| finite(f64::from_le_bytes(b))),
            Datatype::Bytes => Value::Array(Vec::new()),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode(json: &str) -> Result<InferRequest, Error> {
        decode_request(json.as_bytes(), None)
    }

    #[test]
    fn json_tensors_of_every_datatype() {
        let r = decode(
            r#"{"inputs": [
            {"name": "b", "shape": [2], "datatype": "BOOL", "data": [true, false]},
            {"name": "u", "shape": [1, 2], "datatype": "UINT16", "data": [[1, 65535]]},
            {"name": "i", "shape": [2], "datatype": "INT64", "data": [-1, 9007199254740993]},
            {"name": "h", "shape": [1], "datatype": "FP16", "data": [1.5]},
            {"name": "bf", "shape": [1], "datatype": "BF16", "data": [2]},
            {"name": "f", "shape": [2, 1], "datatype": "FP32", "data": [[0.5], [1]]},
            {"name": "s", "shape": [2], "datatype": "BYTES", "data": ["a", "bc"]}
        ]}"#,
        )
        .unwrap();
        let raw = |i: usize| match &r.inputs[i].data {
            Data::Raw(r) => r.clone(),
            Data::Bytes(_) => panic!(),
        };
        assert_eq!(raw(0), vec![1, 0]);
        assert_eq!(raw(1), vec![1, 0, 255, 255]);
        assert_eq!(raw(2)[8..], 9007199254740993i64.to_le_bytes());
        assert_eq!(raw(3), half::f16::from_f32(1.5).to_le_bytes());
        assert_eq!(raw(4), half::bf16::from_f32(2.0).to_le_bytes());
        assert_eq!(raw(5), [0.5f32.to_le_bytes(), 1f32.to_le_bytes()].concat());
        assert_eq!(
            r.inputs[6].data,
            Data::Bytes(vec![b"a".to_vec(), b"bc".to_vec()])
        );
    }

    #[test]
    fn binary_tensors_after_the_header() {
        let header = r#"{"inputs": [
            {"name": "f", "shape": [2], "datatype": "FP32", "parameters": {"binary_data_size": 8}},
            {"name": "s", "shape": [1], "datatype": "BYTES", "parameters": {"binary_data_size": 7}}
        ], "parameters": {"binary_data_output": true}}"#;
        let mut body = header.as_bytes().to_vec();
        body.extend_from_slice(&1f32.to_le_bytes());
        body.extend_from_slice(&2f32.to_le_bytes());
        body.extend_from_slice(&3u32.to_le_bytes());
        body.extend_from_slice(b"jpg");
        let r = decode_request(&body, Some(header.len())).unwrap();
        assert!(r.binary_by_default());
        assert_eq!(r.inputs[1].data, Data::Bytes(vec![b"jpg".to_vec()]));
    }

    #[test]
    fn refuses_lies() {
        for bad in [
            // shape × datatype ≠ data
            r#"{"inputs": [{"name": "x", "shape": [3], "datatype": "FP32", "data": [1, 2]}]}"#,
            r#"{"inputs": [{"name": "x", "shape": [1], "datatype": "FP32", "data": [1, 2]}]}"#,
            // wrong element types
            r#"{"inputs": [{"name": "x", "shape": [1], "datatype": "INT8", "data": [300]}]}"#,
            r#"{"inputs": [{"name": "x", "shape": [1], "datatype": "BOOL", "data": [1]}]}"#,
            r#"{"inputs": [{"name": "x", "shape": [1], "datatype": "INT32", "data": [1.5]}]}"#,
            r#"{"inputs": [{"name": "x", "shape": [1], "datatype": "FP32", "data": ["1"]}]}"#,
            // unknown datatype, negative shape, no data, a name twice, a shape past u64
            r#"{"inputs": [{"name": "x", "shape": [1], "datatype": "FLOAT", "data": [1]}]}"#,
            r#"{"inputs": [{"name": "x", "shape": [-1], "datatype": "FP32", "data": [1]}]}"#,
            r#"{"inputs": [{"name": "x", "shape": [1], "datatype": "FP32"}]}"#,
            r#"{"inputs": [{"name": "x", "shape": [1], "datatype": "FP32", "data": [1]},
                           {"name": "x", "shape": [1], "datatype": "FP32", "data": [1]}]}"#,
            r#"{"inputs": [{"name": "x", "shape": [4294967296, 4294967296, 4294967296], "datatype": "FP32", "data": [1]}]}"#,
            r#"{"parameters": {"a": [1]}, "inputs": []}"#,
        ] {
            assert!(matches!(decode(bad), Err(Error::InvalidInput(_))), "{bad}");
        }
        let header = r#"{"inputs": [{"name": "x", "shape": [2], "datatype": "FP32", "parameters": {"binary_data_size": 8}}]}"#;
        let mut body = header.as_bytes().to_vec();
        body.extend_from_slice(&[0; 4]);
        // Sizes that lie: more than the body holds, fewer than the shape needs, bytes
        // left over, a header past the body.
        assert!(decode_request(&body, Some(header.len())).is_err());
        body.extend_from_slice(&[0; 8]);
        assert!(decode_request(&body, Some(header.len())).is_err());
        assert!(decode_request(&body, Some(body.len() + 1)).is_err());
    }

    #[test]
    fn responses_mix_json_and_binary() {
        let outputs = [
            Tensor {
                name: "a".into(),
                datatype: Datatype::F32,
                shape: vec![2],
                parameters: Map::new(),
                data: Data::Raw([1f32.to_le_bytes(), f32::NAN.to_le_bytes()].concat()),
            },
            Tensor {
                name: "b".into(),
                datatype: Datatype::Bytes,
                shape: vec![1],
                parameters: Map::new(),
                data: Data::Bytes(vec![b"xy".to_vec()]),
            },
        ];
        let e = encode_response("m", "1", Some("r"), &outputs, &[false, true]);
        let n = e.header_length.unwrap();
        let head: Value = serde_json::from_slice(&e.body[..n]).unwrap();
        assert_eq!(head["outputs"][0]["data"], serde_json::json!([1.0, null]));
        assert_eq!(head["outputs"][1]["parameters"]["binary_data_size"], 6);
        assert_eq!(&e.body[n..], b"\x02\0\0\0xy");
        let e = encode_response("m", "1", None, &outputs[..1], &[false]);
        assert!(e.header_length.is_none());
    }
}
