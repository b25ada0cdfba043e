//! A handler for the American Sign Language letter CNN of pytorch/android-demo-app
//! (`asl.ptl`), written with wit-bindgen against the `handler` world (no SDK).
//!
//! - `preprocess`: the request's image (the `data` or `body` part, else the first),
//!   decoded to RGB by the host's `image` interface and resized to 200×200 if it is
//!   not that size, as float32 `[1, 3, 200, 200]` in channel-first order, the raw
//!   0–255 values (the model does its own scaling);
//! - `postprocess`: the 29 logits as `{"letter", "index", "probability"}`, the letter
//!   `'A' + argmax` (the last three classes are the dataset's `del`, `nothing` and
//!   `space`), the probability the logits' softmax.

#![allow(clippy::too_many_arguments)]

wit_bindgen::generate!({
    world: "handler",
    path: "../../wit",
});

use wasmserve::handler::image;
use wasmserve::handler::types::Dtype;

const SIDE: u32 = 200;
const NON_LETTERS: [&str; 3] = ["del", "nothing", "space"];

struct Asl;

fn bad(message: String) -> Error {
    Error {
        status: 400,
        message,
    }
}

impl Guest for Asl {
    fn init(_ctx: Context) -> Result<(), String> {
        Ok(())
    }

    fn preprocess(req: Request) -> Result<Vec<Tensor>, Error> {
        let part = req
            .parts
            .iter()
            .find(|p| p.name == "data" || p.name == "body")
            .or_else(|| req.parts.first())
            .ok_or_else(|| bad("the request carries no image".into()))?;
        let mut img =
            image::decode(&part.data, 3).map_err(|e| bad(format!("not an image: {e}")))?;
        if img.width != SIDE || img.height != SIDE {
            img = image::resize(&img, SIDE, SIDE).map_err(bad)?;
        }
        let plane = (SIDE * SIDE) as usize;
        let mut data = vec![0u8; 3 * plane * 4];
        for (i, px) in img.pixels.chunks_exact(3).enumerate() {
            for (c, &value) in px.iter().enumerate() {
                let at = (c * plane + i) * 4;
                data[at..at + 4].copy_from_slice(&(value as f32).to_le_bytes());
            }
        }
        Ok(vec![Tensor {
            name: String::new(),
            dtype: Dtype::Float32,
            shape: vec![1, 3, SIDE as u64, SIDE as u64],
            data,
        }])
    }

    fn postprocess(_req: Request, outputs: Vec<Tensor>) -> Result<Response, Error> {
        let out = outputs
            .first()
            .filter(|t| t.dtype == Dtype::Float32)
            .ok_or(Error {
                status: 500,
                message: "the model gave no float32 output".into(),
            })?;
        let logits: Vec<f32> = out
            .data
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect();
        let (index, best) = logits
            .iter()
            .copied()
            .enumerate()
            .max_by(|a, b| a.1.total_cmp(&b.1))
            .ok_or(Error {
                status: 500,
                message: "the model gave no logits".into(),
            })?;
        let sum: f32 = logits.iter().map(|l| (l - best).exp()).sum();
        let letter = match index {
            0..26 => char::from(b'A' + index as u8).to_string(),
            i => NON_LETTERS.get(i - 26).unwrap_or(&"?").to_string(),
        };
        let body = serde_json::json!({
            "letter": letter,
            "index": index,
            "probability": 1.0 / sum,
        });
        Ok(Response {
            status: 200,
            headers: vec![("content-type".into(), "application/json".into())],
            body: body.to_string().into_bytes(),
        })
    }
}

export!(Asl);
