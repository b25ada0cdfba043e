//! The built-in `object_detector` handler, answering as TorchServe's does.
//!
//! - Input: an image, as for `image_classifier`.
//! - Preprocess: torchvision's `ToTensor()`: RGB scaled to [0, 1], no resize, no
//!   normalisation, as a float32 `[1, 3, H, W]` tensor.
//! - Postprocess: the outputs of a torchvision-style detector, found by name (`boxes`,
//!   `labels`, `scores`, also nested as in `(losses, [detections])`) or else by position:
//!   `[N, 4]` boxes `(x1, y1, x2, y2)`, `[N]` integer labels and `[N]` scores. Detections
//!   scoring at least `threshold` (default 0.5, `model-config.yaml`) are answered as
//!   `[{"<label>": [x1, y1, x2, y2], "score": s}, …]`, labels named from
//!   `index_to_name.json` when the archive has one.
//!
//! Detection outputs are per image, not stacked on a batch dimension: serve detectors
//! with `batchSize: 1`.

use wasmserve_handler::output::{LabelMap, number};
use wasmserve_handler::vision::{image_bytes, to_tensor};
use wasmserve_handler::{Context, Error, Handler, Request, Response, Tensor, find_output};

struct ObjectDetector {
    labels: LabelMap,
    threshold: f64,
}

impl Handler for ObjectDetector {
    fn init(ctx: &Context) -> Result<Self, String> {
        Ok(ObjectDetector {
            labels: LabelMap::from_model_file("index_to_name.json")?.unwrap_or_default(),
            threshold: ctx.config_f64("threshold", 0.5)?,
        })
    }

    fn preprocess(&self, req: &Request) -> Result<Vec<Tensor>, Error> {
        Ok(vec![to_tensor(&image_bytes(req)?)?])
    }

    fn postprocess(&self, _req: &Request, outputs: Vec<Tensor>) -> Result<Response, Error> {
        let pick = |key: &str, index: usize| {
            find_output(&outputs, key)
                .or_else(|| outputs.get(index))
                .ok_or_else(|| Error::internal(format!("the detector returned no `{key}` output")))
        };
        let boxes: Vec<f32> = pick("boxes", 0)?.to_vec()?;
        let labels = integers(pick("labels", 1)?)?;
        let scores: Vec<f32> = pick("scores", 2)?.to_vec()?;
        if boxes.len() != labels.len() * 4 || scores.len() != labels.len() {
            return Err(Error::internal(format!(
                "the detector returned {} boxes, {} labels and {} scores",
                boxes.len() / 4,
                labels.len(),
                scores.len()
            )));
        }
        let mut answer = Vec::new();
        for ((b, label), score) in boxes.chunks_exact(4).zip(labels).zip(scores) {
            if (score as f64) < self.threshold {
                continue;
            }
            let mut detection = serde_json::Map::new();
            let coords: Vec<serde_json::Value> = b.iter().map(|&v| number(v as f64)).collect();
            let name =
                usize::try_from(label).map_or_else(|_| label.to_string(), |i| self.labels.label(i));
            detection.insert(name, coords.into());
            detection.insert("score".into(), number(score as f64));
            answer.push(serde_json::Value::Object(detection));
        }
        Response::json(&answer)
    }
}

/// Class labels come as int64 from torchvision; accept int32 and float too.
fn integers(t: &Tensor) -> Result<Vec<i64>, Error> {
    t.to_vec::<i64>()
        .or_else(|_| {
            t.to_vec::<i32>()
                .map(|v| v.into_iter().map(i64::from).collect())
        })
        .or_else(|_| {
            t.to_vec::<f32>()
                .map(|v| v.into_iter().map(|x| x as i64).collect())
        })
}

wasmserve_handler::export_handler!(ObjectDetector);
