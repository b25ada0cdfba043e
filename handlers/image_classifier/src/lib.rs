//! The built-in `image_classifier` handler, answering as TorchServe's does.
//!
//! - Input: a JPEG or PNG, as the raw body or a form field `data`/`body`, or the same
//!   bytes base64-encoded.
//! - Preprocess: torchvision's ImageNet transform (resize 256, centre-crop 224, normalise)
//!   to a float32 `[1, 3, 224, 224]` tensor.
//! - Postprocess: softmax over the first output, the top `topk` classes (default 5,
//!   `topk` in `model-config.yaml`), named from `index_to_name.json` when the archive has
//!   one: `{"tabby": 0.43, "tiger_cat": 0.32, …}`, most probable first.

use wasmserve_handler::output::{LabelMap, softmax, top_k};
use wasmserve_handler::vision::imagenet_transform;
use wasmserve_handler::{
    Context, Error, Handler, Request, Response, Tensor, decode_base64, model_file,
};

struct ImageClassifier {
    labels: LabelMap,
    topk: usize,
}

impl Handler for ImageClassifier {
    fn init(ctx: &Context) -> Result<Self, String> {
        let labels = match model_file("index_to_name.json") {
            Some(bytes) => {
                LabelMap::from_json(&bytes).map_err(|e| format!("index_to_name.json: {e}"))?
            }
            None => LabelMap::default(),
        };
        let topk = match ctx.config_value("topk") {
            None => 5,
            Some(v) => v
                .as_u64()
                .filter(|&k| k > 0)
                .ok_or_else(|| format!("topk must be a positive integer, got {v}"))?
                as usize,
        };
        Ok(ImageClassifier { labels, topk })
    }

    fn preprocess(&self, req: &Request) -> Result<Vec<Tensor>, Error> {
        let input = req.input()?;
        let tensor = match imagenet_transform(input) {
            Ok(t) => t,
            Err(first) => match decode_base64(input) {
                Some(bytes) => imagenet_transform(&bytes)?,
                None => return Err(first),
            },
        };
        Ok(vec![tensor])
    }

    fn postprocess(&self, _req: &Request, outputs: Vec<Tensor>) -> Result<Response, Error> {
        let logits: Vec<f32> = outputs
            .first()
            .ok_or_else(|| Error::internal("the model returned no output"))?
            .to_vec()?;
        let probs = softmax(&logits);
        let mut answer = serde_json::Map::new();
        for (class, p) in top_k(&probs, self.topk) {
            answer.insert(self.labels.label(class), serde_json::Value::from(p as f64));
        }
        Response::json(&answer)
    }
}

wasmserve_handler::export_handler!(ImageClassifier);
