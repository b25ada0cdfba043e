//! A test handler that shows the tests the tensors exactly: its preprocess is the one
//! `image_classifier` runs (the SDK's `imagenet_transform` of the request's image), and
//! its postprocess answers with every output the forward returned, bytes and all, as
//! `[{"name", "dtype", "shape", "base64"}]`. With an identity model the answer is the
//! preprocessed input; with a real model, its outputs before any post-processing. The
//! header `x-probe-device` says the device its `init` context named (`cpu`, `cuda:N`).

use base64::Engine as _;
use wasmserve_handler::vision::{image_bytes, imagenet_transform};
use wasmserve_handler::{Context, Error, Handler, Request, Response, Tensor};

struct TensorProbe {
    device: String,
}

impl Handler for TensorProbe {
    fn init(ctx: &Context) -> Result<Self, String> {
        Ok(TensorProbe {
            device: ctx.device.clone(),
        })
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
        let mut response = Response::json(&answer)?;
        response
            .headers
            .push(("x-probe-device".into(), self.device.clone()));
        Ok(response)
    }
}

wasmserve_handler::export_handler!(TensorProbe);
