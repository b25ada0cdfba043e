//! Example handler that streams: a request carrying several images (the fields of a
//! multipart form, any names, or one image as the body) gets one classification per
//! image, each sent as soon as it is ready with [`send_intermediate`], the last one as
//! the final response.
//!
//! - Preprocess: each image transformed for the model (`transform` in
//!   `model-config.yaml`: `imagenet`, torchvision's ImageNet transform to
//!   `[3, 224, 224]`, the default; or `mnist`, grey 28×28 normalised as MNIST models
//!   take it, `[1, 28, 28]`), all stacked into one `[N, …]` tensor so that the model
//!   classifies them in one forward (and batches with other requests as usual). The
//!   model must take a batch: a model traced for a batch of 1 fails with several images.
//! - Postprocess: per image, in the order of the form, softmax and the top `topk`
//!   classes (default 5), named from `index_to_name.json` when the archive has one
//!   (else by their index): one JSON line `{"image": FIELD, "index": I, "of": N,
//!   "classes": {"tabby": 0.43, …}}`.
//!
//! Over HTTP the lines arrive as the chunks of one response (`application/x-ndjson`);
//! over gRPC (`StreamPredictions`, `ModelStreamInfer`) each is one message. A client
//! that stops reading is waited for; one that goes away stops the stream.

use wasmserve_handler::output::{LabelMap, number, softmax, top_k};
use wasmserve_handler::vision::{decode_luma, imagenet_transform};
use wasmserve_handler::{
    Context, Error, Handler, Part, Request, Response, Tensor, send_intermediate,
};

/// The most images one request may carry (each is 600 KB of float32 after the transform).
const MAX_IMAGES: usize = 64;

struct StreamClassifier {
    labels: LabelMap,
    topk: usize,
    transform: Transform,
}

/// How an image becomes the model's input.
#[derive(Clone, Copy)]
enum Transform {
    ImageNet,
    Mnist,
}

impl Transform {
    fn apply(self, bytes: &[u8]) -> Result<Tensor, Error> {
        match self {
            Transform::ImageNet => imagenet_transform(bytes),
            Transform::Mnist => {
                let img = decode_luma(bytes)?.resize(28, 28)?;
                img.to_chw_tensor((0, 0), (28, 28), 1.0 / 255.0, &[0.1307], &[0.3081])
            }
        }
    }
}

/// The request's images: every part that is not empty, in order. A lone part that is
/// not an image may be base64 (TorchServe's JSON forms); `input_bytes` decodes it.
fn images(req: &Request) -> Result<Vec<(String, Vec<u8>)>, Error> {
    let parts: Vec<&Part> = req.parts.iter().filter(|p| !p.data.is_empty()).collect();
    if parts.len() == 1 {
        let bytes = wasmserve_handler::vision::image_bytes(req)?;
        return Ok(vec![(parts[0].name.clone(), bytes.into_owned())]);
    }
    if parts.is_empty() {
        return Err(Error::bad_request(
            "the request has no image: send one as the body, or several as the fields of a multipart form",
        ));
    }
    if parts.len() > MAX_IMAGES {
        return Err(Error::bad_request(format!(
            "the request has {} images; at most {MAX_IMAGES} may come in one request",
            parts.len()
        )));
    }
    Ok(parts
        .into_iter()
        .map(|p| (p.name.clone(), p.data.clone()))
        .collect())
}

impl Handler for StreamClassifier {
    fn init(ctx: &Context) -> Result<Self, String> {
        let transform = match ctx.config_value("transform") {
            None => Transform::ImageNet,
            Some(v) if v == "imagenet" => Transform::ImageNet,
            Some(v) if v == "mnist" => Transform::Mnist,
            Some(v) => {
                return Err(format!(
                    "model-config.yaml: `transform` must be imagenet or mnist, not {v}"
                ));
            }
        };
        Ok(StreamClassifier {
            labels: LabelMap::from_model_file("index_to_name.json")?.unwrap_or_default(),
            topk: ctx.config_positive("topk", 5)?,
            transform,
        })
    }

    fn preprocess(&self, req: &Request) -> Result<Vec<Tensor>, Error> {
        let images = images(req)?;
        let mut data = Vec::new();
        let mut chw = Vec::new();
        for (name, bytes) in &images {
            let t = self
                .transform
                .apply(bytes)
                .map_err(|e| Error::bad_request(format!("field {name:?}: {}", e.message)))?;
            chw = t.shape[1..].to_vec();
            data.extend_from_slice(&t.data);
        }
        let mut shape = vec![images.len() as u64];
        shape.extend(chw);
        Ok(vec![Tensor {
            name: String::new(),
            dtype: wasmserve_handler::Dtype::Float32,
            shape,
            data,
        }])
    }

    fn postprocess(&self, req: &Request, outputs: Vec<Tensor>) -> Result<Response, Error> {
        let names: Vec<String> = images(req)?.into_iter().map(|(n, _)| n).collect();
        let first = outputs
            .first()
            .ok_or_else(|| Error::internal("the model returned no output"))?;
        let logits: Vec<f32> = first.to_vec()?;
        let n = names.len();
        if n == 0 || !logits.len().is_multiple_of(n) || first.shape.first() != Some(&(n as u64)) {
            return Err(Error::internal(format!(
                "the model's output of shape {:?} does not hold one row per image ({n})",
                first.shape
            )));
        }
        let classes = logits.len() / n;
        let mut rows = logits.chunks(classes).enumerate().peekable();
        while let Some((i, row)) = rows.next() {
            let mut top = serde_json::Map::new();
            for (class, p) in top_k(&softmax(row), self.topk) {
                top.insert(self.labels.label(class), number(p as f64));
            }
            let line = serde_json::json!({"image": names[i], "index": i, "of": n, "classes": top});
            let mut body = serde_json::to_vec(&line).map_err(|e| Error::internal(e.to_string()))?;
            body.push(b'\n');
            let piece = Response {
                status: 200,
                headers: vec![("content-type".into(), "application/x-ndjson".into())],
                body,
            };
            if rows.peek().is_none() {
                return Ok(piece);
            }
            // An error: the client went away or fell too far behind; nothing more to send.
            send_intermediate(&piece).map_err(Error::internal)?;
        }
        Err(Error::internal("no image to classify"))
    }
}

wasmserve_handler::export_handler!(StreamClassifier);
