//! Turning model outputs into answers: softmax, top-k and TorchServe's label maps.

use std::collections::HashMap;

/// Softmax of `logits` (numerically stable: the maximum is subtracted first).
/// Marks a non-finite number inside a `serde_json::Value` ([`number`]); written out by
/// [`crate::Response::json`] as Python's `json.dumps` writes it.
pub(crate) const NON_FINITE: &str = "\u{0}wasmserve-non-finite:";

/// A JSON number for `x`, keeping non-finite values: `NaN`, `Infinity` and `-Infinity`
/// come out of [`crate::Response::json`] as those bare words, as TorchServe's Python
/// handlers answer (`json.dumps`), where a plain `serde_json::Value::from` would give
/// `null`. (Strict JSON parsers refuse those words; Python's and JavaScript's `eval`
/// accept them.)
pub fn number(x: f64) -> serde_json::Value {
    match serde_json::Number::from_f64(x) {
        Some(n) => serde_json::Value::Number(n),
        None if x.is_nan() => serde_json::Value::String(format!("{NON_FINITE}NaN")),
        None if x > 0.0 => serde_json::Value::String(format!("{NON_FINITE}Infinity")),
        None => serde_json::Value::String(format!("{NON_FINITE}-Infinity")),
    }
}

/// Replaces the quoted markers of [`number`] in serialized JSON with the bare words.
pub(crate) fn write_non_finite(json: Vec<u8>) -> Vec<u8> {
    let marker = "\"\\u0000wasmserve-non-finite:";
    let text = match String::from_utf8(json) {
        Ok(t) if t.contains(marker) => t,
        Ok(t) => return t.into_bytes(),
        Err(e) => return e.into_bytes(),
    };
    let mut out = String::with_capacity(text.len());
    let mut rest = text.as_str();
    while let Some(at) = rest.find(marker) {
        out.push_str(&rest[..at]);
        let after = &rest[at + marker.len()..];
        let end = after.find('"').unwrap_or(after.len());
        out.push_str(&after[..end]);
        rest = after.get(end + 1..).unwrap_or("");
    }
    out.push_str(rest);
    out.into_bytes()
}

pub fn softmax(logits: &[f32]) -> Vec<f32> {
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let exps: Vec<f32> = logits.iter().map(|&x| (x - max).exp()).collect();
    let sum: f32 = exps.iter().sum();
    exps.into_iter().map(|e| e / sum).collect()
}

/// The `k` largest values with their indices, largest first (ties: lower index first).
pub fn top_k(values: &[f32], k: usize) -> Vec<(usize, f32)> {
    let mut indexed: Vec<(usize, f32)> = values.iter().copied().enumerate().collect();
    indexed.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
    indexed.truncate(k);
    indexed
}

/// Class index → label, read from an `index_to_name.json` in any of TorchServe's three
/// formats:
///
/// - `{"0": "tench", …}`
/// - `{"0": ["n01440764", "tench"], …}` (the last element is the label)
/// - `{"object_type_names": ["tench", …]}`
///
/// ```
/// # use wasmserve_handler::output::LabelMap;
/// let m = LabelMap::from_json(br#"{"0": ["n01440764", "tench"], "1": "goldfish"}"#).unwrap();
/// assert_eq!(m.label(0), "tench");
/// assert_eq!(m.label(1), "goldfish");
/// assert_eq!(m.label(7), "7");
/// ```
#[derive(Clone, Debug, Default)]
pub struct LabelMap {
    labels: HashMap<usize, String>,
}

impl LabelMap {
    /// Parses a mapping file; the error says what is wrong with it.
    pub fn from_json(bytes: &[u8]) -> Result<LabelMap, String> {
        let value: serde_json::Value =
            serde_json::from_slice(bytes).map_err(|e| format!("the label map is not JSON: {e}"))?;
        let obj = value
            .as_object()
            .ok_or("the label map must be a JSON object")?;
        let mut labels = HashMap::new();
        if let Some(names) = obj.get("object_type_names") {
            let names = names
                .as_array()
                .ok_or("`object_type_names` must be a list")?;
            for (i, name) in names.iter().enumerate() {
                labels.insert(
                    i,
                    label_of(name).ok_or("`object_type_names` must hold strings")?,
                );
            }
        } else {
            for (key, value) in obj {
                let index: usize = key
                    .parse()
                    .map_err(|_| format!("label map key {key:?} is not a class index"))?;
                let label = label_of(value).ok_or_else(|| {
                    format!("label map value for {key:?} must be a string or a list")
                })?;
                labels.insert(index, label);
            }
        }
        Ok(LabelMap { labels })
    }

    /// One label per line (e.g. a `topics.txt`), the first line being class 0.
    pub fn from_lines(text: &str) -> LabelMap {
        let labels = text
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .map(String::from)
            .enumerate()
            .collect();
        LabelMap { labels }
    }

    /// Reads the archive's file `name` (see [`crate::model_file`]): a `.json` file in
    /// one of the three formats above, any other file one label per line. `Ok(None)`
    /// when the archive has no such file.
    pub fn from_model_file(name: &str) -> Result<Option<LabelMap>, String> {
        let Some(bytes) = crate::model_file(name) else {
            return Ok(None);
        };
        let map = if name.ends_with(".json") {
            LabelMap::from_json(&bytes).map_err(|e| format!("{name}: {e}"))?
        } else {
            LabelMap::from_lines(&String::from_utf8_lossy(&bytes))
        };
        Ok(Some(map))
    }

    /// The label of class `index`, or the index itself when the map has none.
    pub fn label(&self, index: usize) -> String {
        self.labels
            .get(&index)
            .cloned()
            .unwrap_or_else(|| index.to_string())
    }

    /// How many classes have a label.
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    /// Whether the map is empty.
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }
}

fn label_of(value: &serde_json::Value) -> Option<String> {
    match value {
        serde_json::Value::String(s) => Some(s.clone()),
        serde_json::Value::Array(items) => items.last().and_then(|v| v.as_str()).map(String::from),
        _ => None,
    }
}
