//! An example pipeline: reads a number written as handwritten digits side by side.
//!
//! Input: a PNG or JPEG (raw body, multipart, base64 or JSON `data`, as any handler
//! takes it) whose digits stand side by side in one row, each about as wide as the
//! image is high, like MNIST digits laid next to each other. The pipeline cuts the
//! image into that many square-ish crops, turns each into MNIST's input (grey, 28×28,
//! `(x / 255 - 0.1307) / 0.3081`), classifies all of them in one batched call to the
//! model, and answers the number:
//!
//! ```json
//! {"number": "0123456789", "digits": [{"digit": 0, "probability": 0.99}, ...]}
//! ```
//!
//! The model is the first one the archive's `model-config.yaml` declares
//! (`models: [mnist]`); `digits` there bounds how many digits one image may hold
//! (default 32). Any classifier with MNIST's input and `[N, 10]` scores works, e.g.
//! `vit4mnist.ptl` served with the `mnist_handler` example.

use wasmserve_handler::output::softmax;
use wasmserve_handler::pipeline::{Pipeline, models};
use wasmserve_handler::vision::{decode_luma, image_bytes};
use wasmserve_handler::{Context, Error, Request, Response, Tensor};

const SIDE: u32 = 28;
const MEAN: f32 = 0.1307;
const STD: f32 = 0.3081;

struct Number {
    /// The model that classifies one digit.
    model: String,
    /// The most digits one image may hold.
    max_digits: usize,
}

impl Pipeline for Number {
    fn init(ctx: &Context) -> Result<Self, String> {
        let model = ctx
            .config_value("models")
            .and_then(|m| m.as_array()?.first()?.as_str().map(str::to_string))
            .ok_or("model-config.yaml must declare the digit classifier: `models: [NAME]`")?;
        let max_digits = ctx.config_positive("digits", 32)?;
        Ok(Number { model, max_digits })
    }

    fn handle(&self, req: &Request) -> Result<Response, Error> {
        let img = decode_luma(&image_bytes(req)?)?;
        // Each digit is about as wide as the image is high.
        let count = ((img.width as f64 / img.height as f64).round() as usize).max(1);
        if count > self.max_digits {
            return Err(Error::bad_request(format!(
                "the image is {}x{}: {count} digits of its height side by side, more than \
                 the {} this pipeline reads (model-config.yaml `digits`)",
                img.width, img.height, self.max_digits
            )));
        }
        let mut batch = Vec::with_capacity(count * (SIDE * SIDE) as usize);
        for i in 0..count {
            let left = (i as u64 * img.width as u64 / count as u64) as u32;
            let right = ((i as u64 + 1) * img.width as u64 / count as u64) as u32;
            let crop = img
                .crop(left, 0, right - left, img.height)?
                .resize(SIDE, SIDE)?;
            let t = crop.to_chw_tensor((0, 0), (SIDE, SIDE), 1.0 / 255.0, &[MEAN], &[STD])?;
            batch.extend(t.to_vec::<f32>()?);
        }
        let input = Tensor::from_slice(&[count as u64, 1, SIDE as u64, SIDE as u64], &batch)?;
        let outputs = models::infer(&self.model, None, &[input])?;
        let scores: Vec<f32> = outputs
            .first()
            .ok_or_else(|| Error::internal(format!("{} returned no output", self.model)))?
            .to_vec()?;
        if scores.len() != count * 10 {
            return Err(Error::internal(format!(
                "{} returned {} scores for {count} digits; a digit classifier gives 10 each",
                self.model,
                scores.len()
            )));
        }
        let mut number = String::with_capacity(count);
        let mut digits = Vec::with_capacity(count);
        for row in scores.chunks_exact(10) {
            let probs = softmax(row);
            let (digit, p) = probs
                .iter()
                .enumerate()
                .fold(
                    (0, f32::MIN),
                    |best, (d, &p)| if p > best.1 { (d, p) } else { best },
                );
            number.push(char::from(b'0' + digit as u8));
            digits.push(serde_json::json!({"digit": digit, "probability": p}));
        }
        Response::json(&serde_json::json!({"number": number, "digits": digits}))
    }
}

wasmserve_handler::export_pipeline!(Number);
