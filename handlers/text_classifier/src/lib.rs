//! The built-in `text_classifier` handler: UTF-8 text in, class probabilities out,
//! configured through `model-config.yaml` instead of code.
//!
//! - Input: text, as the raw body, a form field `data`/`body`, or a JSON string
//!   (`"…"`, `{"data": "…"}`, `{"text": "…"}`).
//! - Preprocess, by `tokenizer`:
//!   - `bytes` (default): the UTF-8 bytes of the text, one element each;
//!   - `words`: lower-cased words split on whitespace and punctuation, looked up in the
//!     archive's `vocab` file (one token per line, line number = id; or a JSON object
//!     `{"token": id}`), unknown words as `unk_id` (default 0).
//!
//!   The ids become a `[1, L]` tensor of `input_dtype` (`uint8`, `int32` or `int64`;
//!   default `uint8` for bytes, `int64` for words), truncated to `max_length` if set.
//! - Postprocess: the first output `[1, classes]`; softmax over it unless `output` is
//!   `probabilities` (models that end in a softmax already). Labels from the archive's
//!   `labels` file (default `index_to_name.json`; a `.json` in TorchServe's formats, any
//!   other file one label per line). The answer is `{"label": probability, …}` for
//!   every class in class order, as TorchServe's, or the `topk` most probable, most
//!   probable first, when `topk` is set.
//!
//! The byte-level LSTM `reddit_bytelstm.pt` is served with
//! `labels: reddit_topics.txt` and `output: probabilities`.

use std::collections::HashMap;

use wasmserve_handler::output::{LabelMap, number, softmax, top_k};
use wasmserve_handler::{Context, Error, Handler, Request, Response, Tensor};

enum Tokenizer {
    Bytes,
    Words {
        vocab: HashMap<String, i64>,
        unk: i64,
    },
}

#[derive(Clone, Copy)]
enum IdType {
    U8,
    I32,
    I64,
}

struct TextClassifier {
    tokenizer: Tokenizer,
    id_type: IdType,
    max_length: Option<usize>,
    softmax: bool,
    labels: LabelMap,
    topk: Option<usize>,
}

impl Handler for TextClassifier {
    fn init(ctx: &Context) -> Result<Self, String> {
        let tokenizer = match ctx.config_str("tokenizer")?.as_deref().unwrap_or("bytes") {
            "bytes" => Tokenizer::Bytes,
            "words" => {
                let file = ctx
                    .config_str("vocab")?
                    .unwrap_or_else(|| "vocab.txt".into());
                let bytes = wasmserve_handler::model_file(&file).ok_or_else(|| {
                    format!("tokenizer `words` needs the vocabulary file {file:?} in the archive")
                })?;
                let unk = match ctx.config_value("unk_id") {
                    None => 0,
                    Some(v) => v.as_i64().ok_or_else(|| {
                        format!("model-config.yaml: `unk_id` must be a whole number, got {v}")
                    })?,
                };
                Tokenizer::Words {
                    vocab: parse_vocab(&file, &bytes)?,
                    unk,
                }
            }
            other => {
                return Err(format!(
                    "model-config.yaml: tokenizer {other:?} is not `bytes` or `words`"
                ));
            }
        };
        let default_type = if matches!(tokenizer, Tokenizer::Bytes) {
            "uint8"
        } else {
            "int64"
        };
        let id_type = match ctx
            .config_str("input_dtype")?
            .as_deref()
            .unwrap_or(default_type)
        {
            "uint8" => IdType::U8,
            "int32" => IdType::I32,
            "int64" => IdType::I64,
            other => {
                return Err(format!(
                    "model-config.yaml: input_dtype {other:?} is not uint8, int32 or int64"
                ));
            }
        };
        let softmax = match ctx.config_str("output")?.as_deref().unwrap_or("logits") {
            "logits" => true,
            "probabilities" => false,
            other => {
                return Err(format!(
                    "model-config.yaml: output {other:?} is not `logits` or `probabilities`"
                ));
            }
        };
        let labels_file = ctx
            .config_str("labels")?
            .unwrap_or_else(|| "index_to_name.json".into());
        let labels = LabelMap::from_model_file(&labels_file)?;
        if labels.is_none() && ctx.config_value("labels").is_some() {
            return Err(format!(
                "the labels file {labels_file:?} is not in the archive"
            ));
        }
        Ok(TextClassifier {
            tokenizer,
            id_type,
            max_length: ctx
                .config_value("max_length")
                .map(|_| ctx.config_positive("max_length", 1))
                .transpose()?,
            softmax,
            labels: labels.unwrap_or_default(),
            topk: ctx
                .config_value("topk")
                .map(|_| ctx.config_positive("topk", 1))
                .transpose()?,
        })
    }

    fn preprocess(&self, req: &Request) -> Result<Vec<Tensor>, Error> {
        let text = req.input_text()?;
        let mut ids: Vec<i64> = match &self.tokenizer {
            Tokenizer::Bytes => text.bytes().map(i64::from).collect(),
            Tokenizer::Words { vocab, unk } => words(&text)
                .map(|w| vocab.get(&w).copied().unwrap_or(*unk))
                .collect(),
        };
        if let Some(max) = self.max_length {
            ids.truncate(max);
        }
        if ids.is_empty() {
            return Err(Error::bad_request("the text is empty"));
        }
        let shape = [1, ids.len() as u64];
        match self.id_type {
            IdType::I64 => Tensor::from_slice(&shape, &ids),
            IdType::I32 => {
                Tensor::from_slice(&shape, &ids.iter().map(|&i| i as i32).collect::<Vec<_>>())
            }
            IdType::U8 => {
                let bytes: Result<Vec<u8>, _> = ids.iter().map(|&i| u8::try_from(i)).collect();
                let bytes = bytes
                    .map_err(|_| Error::internal("token ids do not fit uint8; set input_dtype"))?;
                Tensor::from_slice(&shape, &bytes)
            }
        }
        .map(|t| vec![t])
    }

    fn postprocess(&self, _req: &Request, outputs: Vec<Tensor>) -> Result<Response, Error> {
        let scores: Vec<f32> = outputs
            .first()
            .ok_or_else(|| Error::internal("the model returned no output"))?
            .to_vec()?;
        let probs = if self.softmax {
            softmax(&scores)
        } else {
            scores
        };
        let ranked = match self.topk {
            Some(k) => top_k(&probs, k),
            None => probs.iter().copied().enumerate().collect(),
        };
        let mut answer = serde_json::Map::new();
        for (class, p) in ranked {
            answer.insert(self.labels.label(class), number(p as f64));
        }
        Response::json(&answer)
    }
}

fn words(text: &str) -> impl Iterator<Item = String> + '_ {
    text.split(|c: char| c.is_whitespace() || (c.is_ascii_punctuation() && c != '\''))
        .filter(|w| !w.is_empty())
        .map(str::to_lowercase)
}

fn parse_vocab(file: &str, bytes: &[u8]) -> Result<HashMap<String, i64>, String> {
    if file.ends_with(".json") {
        let map: HashMap<String, i64> = serde_json::from_slice(bytes)
            .map_err(|e| format!("{file}: expected {{\"token\": id}}: {e}"))?;
        return Ok(map);
    }
    Ok(String::from_utf8_lossy(bytes)
        .lines()
        .enumerate()
        .map(|(i, t)| (t.trim().to_string(), i as i64))
        .collect())
}

wasmserve_handler::export_handler!(TextClassifier);
