//! The built-in `image_segmenter` handler, answering as TorchServe's does.
//!
//! - Input: an image, as for `image_classifier`.
//! - Preprocess: torchvision's ImageNet transform (resize 256, centre-crop 224, normalise).
//! - Postprocess: the model's `out` output (torchvision segmentation models return
//!   `{"out": …, "aux": …}`), else its first, of shape `[1, classes, H, W]`: softmax over
//!   the classes, and per pixel the most probable class and its probability, as
//!   `[H][W][class, probability]` (the class as a float, as TorchServe's `tolist()` gives).

use wasmserve_handler::vision::{image_bytes, imagenet_transform};
use wasmserve_handler::{Context, Error, Handler, Request, Response, Tensor, find_output};

struct ImageSegmenter;

impl Handler for ImageSegmenter {
    fn init(_ctx: &Context) -> Result<Self, String> {
        Ok(ImageSegmenter)
    }

    fn preprocess(&self, req: &Request) -> Result<Vec<Tensor>, Error> {
        Ok(vec![imagenet_transform(&image_bytes(req)?)?])
    }

    fn postprocess(&self, _req: &Request, outputs: Vec<Tensor>) -> Result<Response, Error> {
        let out = find_output(&outputs, "out")
            .or(outputs.first())
            .ok_or_else(|| Error::internal("the model returned no output"))?;
        let [classes, h, w] = match *out.unbatched_shape() {
            [c, h, w] => [c as usize, h as usize, w as usize],
            _ => {
                return Err(Error::internal(format!(
                    "a segmentation model must return [1, classes, H, W], not {:?}",
                    out.shape
                )));
            }
        };
        let logits: Vec<f32> = out.to_vec()?;
        let plane = h * w;
        let mut answer = Vec::with_capacity(h);
        for y in 0..h {
            let mut row = Vec::with_capacity(w);
            for x in 0..w {
                let at = |c: usize| logits[c * plane + y * w + x];
                // Softmax over the classes at this pixel; only the winner's share is needed.
                let (best, max) = (0..classes).fold((0, f32::NEG_INFINITY), |(b, m), c| {
                    if at(c) > m { (c, at(c)) } else { (b, m) }
                });
                let sum: f32 = (0..classes).map(|c| (at(c) - max).exp()).sum();
                row.push([best as f64, (1.0 / sum) as f64]);
            }
            answer.push(row);
        }
        Response::json(&answer)
    }
}

wasmserve_handler::export_handler!(ImageSegmenter);
