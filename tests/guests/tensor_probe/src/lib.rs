//! A test handler that shows the tests the tensors exactly: its preprocess is the one
//! `image_classifier` runs (the SDK's `imagenet_transform` of the request's image), and
//! its postprocess answers with every output the forward returned, bytes and all, as
//! `[{"name", "dtype", "shape", "base64"}]`. With an identity model the answer is the
//! preprocessed input; with a real model, its outputs before any post-processing.

use base64::Engine as _;
use wasmserve_handler::vision::{image_bytes, imagenet_transform};
use wasmserve_handler::{Context, Error, Handler, Request, Response, Tensor};

struct TensorProbe;

impl Handler for TensorProbe {
    fn init(_ctx: &Context) -> Result<Self, String> {
        Ok(TensorProbe)
    }

    fn preprocess(&self, req: &Request) -> Result<Vec<Tensor>, Error> {
        Ok(vec![imagenet_transform(&image_bytes(req)?)?])
    }

    fn postprocess(&self, _req: &Request, outputs: Vec<Tensor>) -> Result<Response, Error> {
        let answer: Vec<serde_json::Value> = outputs
            .iter()
            .map(|t| {
                serde_json::json!({
                    "name": t.name,
                    "dtype": format!("{:?}", t.dtype).trim_start_matches("Dtype::"),
                    "shape": t.shape,
                    "base64": base64::engine::general_purpose::STANDARD.encode(&t.data),
                })
            })
            .collect();
        Response::json(&answer)
    }
}

wasmserve_handler::export_handler!(TensorProbe);
