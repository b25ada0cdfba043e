//! An example handler for MNIST digit classifiers such as `vit4mnist.ptl`.
//!
//! Input: a PNG or JPEG of a handwritten digit (any size: it is converted to grey and
//! resized to 28×28). Preprocess: pixels `(x / 255 - 0.1307) / 0.3081` as a float32
//! `[1, 1, 28, 28]` tensor. Postprocess: the digit with the highest score, as a JSON
//! number, like TorchServe's MNIST example. It also records the winning score as a
//! custom metric, `digit_score{digit="…"}`, which the metrics API exposes with the
//! model's name and version added by the host.

use wasmserve_handler::output::top_k;
use wasmserve_handler::vision::decode_luma;
use wasmserve_handler::{Context, Error, Handler, Request, Response, Tensor, metric};

const SIDE: u32 = 28;
const MEAN: f32 = 0.1307;
const STD: f32 = 0.3081;

struct Mnist;

impl Handler for Mnist {
    fn init(_ctx: &Context) -> Result<Self, String> {
        Ok(Mnist)
    }

    fn preprocess(&self, req: &Request) -> Result<Vec<Tensor>, Error> {
        let img = decode_luma(req.input()?)?.resize(SIDE, SIDE)?;
        let tensor = img.to_chw_tensor((0, 0), (SIDE, SIDE), 1.0 / 255.0, &[MEAN], &[STD])?;
        Ok(vec![tensor])
    }

    fn postprocess(&self, _req: &Request, outputs: Vec<Tensor>) -> Result<Response, Error> {
        let scores: Vec<f32> = outputs
            .first()
            .ok_or_else(|| Error::internal("the model returned no output"))?
            .to_vec()?;
        let (digit, score) = top_k(&scores, 1)
            .into_iter()
            .next()
            .ok_or_else(|| Error::internal("the model returned an empty output"))?;
        metric(
            "digit_score",
            score as f64,
            "logit",
            &[("digit", &digit.to_string())],
        );
        Response::json(&digit)
    }
}

wasmserve_handler::export_handler!(Mnist);
