//! The built-in `image_classifier` handler, answering as TorchServe's does.
//!
//! - Input: a JPEG or PNG, as the raw body or a form field `data`/`body`, or the same
//!   bytes base64-encoded (raw, or in a JSON body).
//! - Preprocess: torchvision's ImageNet transform (resize 256, centre-crop 224, normalise)
//!   to a float32 `[1, 3, 224, 224]` tensor.
//! - Postprocess: softmax over the first output, the top `topk` classes (default 5,
//!   `topk` in `model-config.yaml`), named from `index_to_name.json` when the archive has
//!   one: `{"tabby": 0.43, "tiger_cat": 0.32, …}`, most probable first.

use wasmserve_handler::output::{LabelMap, number, softmax, top_k};
use wasmserve_handler::vision::{image_bytes, imagenet_transform};
use wasmserve_handler::{Context, Error, Handler, Request, Response, Tensor};

/// The handler (public so that benchmarks can run the same code natively).
pub struct ImageClassifier {
    labels: LabelMap,
    topk: usize,
}

impl Handler for ImageClassifier {
    fn init(ctx: &Context) -> Result<Self, String> {
        Ok(ImageClassifier {
            labels: LabelMap::from_model_file("index_to_name.json")?.unwrap_or_default(),
            topk: ctx.config_positive("topk", 5)?,
        })
    }

    fn preprocess(&self, req: &Request) -> Result<Vec<Tensor>, Error> {
        Ok(vec![imagenet_transform(&image_bytes(req)?)?])
    }

    fn postprocess(&self, _req: &Request, outputs: Vec<Tensor>) -> Result<Response, Error> {
        let logits: Vec<f32> = outputs
            .first()
            .ok_or_else(|| Error::internal("the model returned no output"))?
            .to_vec()?;
        let probs = softmax(&logits);
        let mut answer = serde_json::Map::new();
        for (class, p) in top_k(&probs, self.topk) {
            answer.insert(self.labels.label(class), number(p as f64));
        }
        Response::json(&answer)
    }
}

wasmserve_handler::export_handler!(ImageClassifier);
