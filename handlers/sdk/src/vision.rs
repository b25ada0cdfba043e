//! Image input as torchvision prepares it: decode (JPEG, PNG), resize the shorter side
//! with PIL's antialiased bilinear filter, centre-crop, scale to [0, 1], normalise, and
//! lay out as a CHW float32 tensor.
//!
//! Sizes and offsets follow torchvision exactly: the longer side becomes
//! `int(size * long / short)` (truncated) and the crop offset `round((dim - crop) / 2)`
//! (Python's round, ties to even); resizing is Pillow's arithmetic ([`crate::resample`])
//! and the values torchvision's `(v / 255 - mean) / std` in `f32`. In a handler the host
//! decodes, with libjpeg-turbo as Pillow does, so that the tensors are torchvision's on
//! Pillow bit for bit; built natively (outside wasm32) this crate decodes JPEG with the
//! `image` crate, whose pixels differ from libjpeg-turbo's by a level here and there.

use std::borrow::Cow;

use crate::{Error, Request, Tensor, decode_base64};

/// ImageNet's per-channel mean, used by torchvision's pretrained classifiers.
pub const IMAGENET_MEAN: [f32; 3] = [0.485, 0.456, 0.406];
/// ImageNet's per-channel standard deviation.
pub const IMAGENET_STD: [f32; 3] = [0.229, 0.224, 0.225];

/// An 8-bit image, `channels` interleaved values per pixel, row-major.
#[derive(Clone, Debug)]
pub struct Image {
    /// Width in pixels.
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
    /// 1 (grey) or 3 (RGB).
    pub channels: u32,
    /// `width * height * channels` bytes.
    pub pixels: Vec<u8>,
}

/// The largest image decoded: 40 megapixels…
pub const MAX_PIXELS: u64 = 40_000_000;
/// …and 16384 pixels on a side (a decompression bomb is refused before it is decoded).
pub const MAX_SIDE: u32 = 16_384;

/// Decodes a JPEG or PNG (any colour type) into 8-bit RGB. Fails with 400 when `bytes`
/// is not an image in a supported format.
///
/// In a handler (wasm32) the host decodes, natively; elsewhere this crate does.
pub fn decode_rgb(bytes: &[u8]) -> Result<Image, Error> {
    decode_to(bytes, 3)
}

/// Decodes a JPEG or PNG into 8-bit greyscale (ITU-R 601 luma, as PIL's `convert("L")`).
pub fn decode_luma(bytes: &[u8]) -> Result<Image, Error> {
    decode_to(bytes, 1)
}

/// Decodes into RGB (`channels` 3) or grey (1) and resizes the shorter side to `size`
/// (torchvision's `Resize(size)`), in one step (one host call in a handler).
pub fn decode_resize_shorter(bytes: &[u8], channels: u32, size: u32) -> Result<Image, Error> {
    #[cfg(target_arch = "wasm32")]
    {
        use crate::bindings::wasmserve::handler::image as host;
        host::decode_resize_shorter(bytes, channels as u8, size)
            .map(Image::from_host)
            .map_err(Error::bad_request)
    }
    #[cfg(not(target_arch = "wasm32"))]
    {
        decode_to(bytes, channels)?.resize_shorter_side(size)
    }
}

/// [`decode_resize_shorter`], then torchvision's `CenterCrop(crop)`: a `crop` × `crop`
/// image, the same pixels as resizing the whole image and cropping. In a handler, one
/// host call that computes the crop's pixels alone (less work, and a smaller image
/// copied into the sandbox). Fails when `crop` exceeds `size`.
pub fn decode_resize_center_crop(
    bytes: &[u8],
    channels: u32,
    size: u32,
    crop: u32,
) -> Result<Image, Error> {
    #[cfg(target_arch = "wasm32")]
    {
        use crate::bindings::wasmserve::handler::image as host;
        host::decode_resize_center_crop(bytes, channels as u8, size, crop)
            .map(Image::from_host)
            .map_err(Error::bad_request)
    }
    #[cfg(not(target_arch = "wasm32"))]
    {
        if crop > size {
            return Err(Error::bad_request(format!(
                "cannot crop {crop}x{crop} from an image whose shorter side is {size}"
            )));
        }
        let img = decode_resize_shorter(bytes, channels, size)?;
        let (left, top) = img.center_offsets(crop, crop)?;
        img.crop(left, top, crop, crop)
    }
}

fn decode_to(bytes: &[u8], channels: u32) -> Result<Image, Error> {
    #[cfg(target_arch = "wasm32")]
    {
        use crate::bindings::wasmserve::handler::image as host;
        host::decode(bytes, channels as u8)
            .map(Image::from_host)
            .map_err(Error::bad_request)
    }
    #[cfg(not(target_arch = "wasm32"))]
    {
        native::decode(bytes, channels).map_err(Error::bad_request)
    }
}

/// The implementations the host runs for the `image` interface (and native builds use).
#[cfg(not(target_arch = "wasm32"))]
pub mod native {
    use super::{Image, MAX_PIXELS, MAX_SIDE};

    /// Decodes into `channels` 1 or 3, within [`MAX_PIXELS`] and [`MAX_SIDE`].
    pub fn decode(bytes: &[u8], channels: u32) -> Result<Image, String> {
        let format = image::guess_format(bytes)
            .map_err(|_| "the input is not an image: expected a JPEG or PNG file".to_string())?;
        let mut reader = image::ImageReader::with_format(std::io::Cursor::new(bytes), format);
        reader.limits(limits());
        let (w, h) = reader
            .into_dimensions()
            .map_err(|e| format!("cannot decode the {format:?} image: {e}"))?;
        if w as u64 * h as u64 > MAX_PIXELS {
            return Err(format!(
                "the image is {w}x{h}, over the {MAX_PIXELS}-pixel limit"
            ));
        }
        let mut reader = image::ImageReader::with_format(std::io::Cursor::new(bytes), format);
        reader.limits(limits());
        let img = reader
            .decode()
            .map_err(|e| format!("cannot decode the {format:?} image: {e}"))?;
        Ok(match channels {
            1 => {
                let g = img.into_luma8();
                Image {
                    width: g.width(),
                    height: g.height(),
                    channels: 1,
                    pixels: g.into_raw(),
                }
            }
            3 => {
                let c = img.into_rgb8();
                Image {
                    width: c.width(),
                    height: c.height(),
                    channels: 3,
                    pixels: c.into_raw(),
                }
            }
            n => return Err(format!("cannot decode into {n} channels; use 1 or 3")),
        })
    }

    fn limits() -> image::Limits {
        let mut limits = image::Limits::default();
        limits.max_image_width = Some(MAX_SIDE);
        limits.max_image_height = Some(MAX_SIDE);
        limits.max_alloc = Some(MAX_PIXELS * 4);
        limits
    }
}

impl Image {
    #[cfg(target_arch = "wasm32")]
    fn from_host(img: crate::bindings::wasmserve::handler::image::Image) -> Image {
        Image {
            width: img.width,
            height: img.height,
            channels: img.channels as u32,
            pixels: img.pixels,
        }
    }

    /// Resizes so that the shorter side is `size` (torchvision's `Resize(size)`), with
    /// PIL's antialiased bilinear filter.
    pub fn resize_shorter_side(&self, size: u32) -> Result<Image, Error> {
        let (w, h) = (self.width, self.height);
        let (nw, nh) = if w <= h {
            (size, (size as u64 * h as u64 / w as u64) as u32)
        } else {
            ((size as u64 * w as u64 / h as u64) as u32, size)
        };
        self.resize(nw, nh)
    }

    /// Resizes to exactly `width` × `height` with PIL's antialiased bilinear filter.
    ///
    /// In a handler (wasm32) the host resizes, natively; elsewhere this crate does.
    pub fn resize(&self, width: u32, height: u32) -> Result<Image, Error> {
        #[cfg(target_arch = "wasm32")]
        {
            if (width, height) == (self.width, self.height) {
                return Ok(self.clone());
            }
            let img = crate::bindings::wasmserve::handler::image::Image {
                width: self.width,
                height: self.height,
                channels: self.channels as u8,
                pixels: self.pixels.clone(),
            };
            crate::bindings::wasmserve::handler::image::resize(&img, width, height)
                .map(Image::from_host)
                .map_err(Error::bad_request)
        }
        #[cfg(not(target_arch = "wasm32"))]
        {
            self.resize_natively(width, height)
        }
    }

    /// [`Image::resize`] by this crate's own code, Pillow's arithmetic to the bit
    /// ([`crate::resample`]); what the host runs for a handler's `resize`.
    pub fn resize_natively(&self, width: u32, height: u32) -> Result<Image, Error> {
        if self.width == 0 || self.height == 0 || width == 0 || height == 0 {
            return Err(Error::bad_request("cannot resize an empty image"));
        }
        if (width, height) == (self.width, self.height) {
            return Ok(self.clone());
        }
        let expected = self.width as u64 * self.height as u64 * self.channels as u64;
        if !matches!(self.channels, 1 | 3) || self.pixels.len() as u64 != expected {
            return Err(Error::internal(format!(
                "a {}x{} image of {} channel(s) with {} bytes cannot be resized",
                self.width,
                self.height,
                self.channels,
                self.pixels.len()
            )));
        }
        let pixels = crate::resample::resize(
            &self.pixels,
            (
                self.width as usize,
                self.height as usize,
                self.channels as usize,
            ),
            (width as usize, height as usize),
        );
        Ok(Image {
            width,
            height,
            channels: self.channels,
            pixels,
        })
    }

    /// The `width` × `height` window at `(left, top)` as an image of its own. Fails
    /// (400) when the window is empty or reaches outside the image.
    pub fn crop(&self, left: u32, top: u32, width: u32, height: u32) -> Result<Image, Error> {
        let fits = |start: u32, len: u32, dim: u32| {
            len > 0 && start.checked_add(len).is_some_and(|e| e <= dim)
        };
        if !fits(left, width, self.width) || !fits(top, height, self.height) {
            return Err(Error::bad_request(format!(
                "the {width}x{height} crop at ({left}, {top}) is not inside the {}x{} image",
                self.width, self.height
            )));
        }
        let c = self.channels as usize;
        let stride = self.width as usize * c;
        let mut pixels = Vec::with_capacity(width as usize * height as usize * c);
        for y in top as usize..(top + height) as usize {
            let start = y * stride + left as usize * c;
            pixels.extend_from_slice(&self.pixels[start..start + width as usize * c]);
        }
        Ok(Image {
            width,
            height,
            channels: self.channels,
            pixels,
        })
    }

    /// The `width` × `height` window at the centre (torchvision's `CenterCrop`), as the
    /// pixel offsets `(left, top)`. Fails when the image is smaller than the window.
    pub fn center_offsets(&self, width: u32, height: u32) -> Result<(u32, u32), Error> {
        if width > self.width || height > self.height {
            return Err(Error::bad_request(format!(
                "the image is {}x{}, smaller than the {width}x{height} crop",
                self.width, self.height
            )));
        }
        let off = |dim: u32, crop: u32| ((dim - crop) as f64 / 2.0).round_ties_even() as u32;
        Ok((off(self.width, width), off(self.height, height)))
    }

    /// The CHW float32 tensor `[1, C, height, width]` of the window at `(left, top)`, each
    /// value `(pixel * scale - mean[c]) / std[c]` computed in `f32` in that order, as
    /// torchvision's `ToTensor()` + `Normalize(mean, std)` do. A `scale` of `1 / n` for a
    /// whole `n` (`1.0 / 255.0`) divides by `n`, as `ToTensor()` divides by 255, so that
    /// the values are torchvision's to the bit.
    pub fn to_chw_tensor(
        &self,
        (left, top): (u32, u32),
        (width, height): (u32, u32),
        scale: f32,
        mean: &[f32],
        std: &[f32],
    ) -> Result<Tensor, Error> {
        let c = self.channels as usize;
        if mean.len() != c || std.len() != c {
            return Err(Error::internal(format!(
                "mean and std need {c} values each"
            )));
        }
        if left as u64 + width as u64 > self.width as u64
            || top as u64 + height as u64 > self.height as u64
        {
            return Err(Error::internal("crop window outside the image"));
        }
        let (w, h) = (width as usize, height as usize);
        let stride = self.width as usize * c;
        // An 8-bit value has 256 possible results per channel: a table of them, computed
        // with torchvision's operations, turns the pass into lookups.
        let lut = normalise_table(scale, mean, std);
        let mut out = vec![0f32; c * h * w];
        // One pass over the window's pixels, each written to its channel's plane. The
        // slices are cut to length first, so that the loops run without bounds checks.
        for y in 0..h {
            let start = (top as usize + y) * stride + left as usize * c;
            let row = &self.pixels[start..start + w * c];
            if let [l0, l1, l2] = &lut[..] {
                let (r, rest) = out.split_at_mut(h * w);
                let (g, b) = rest.split_at_mut(h * w);
                let span = y * w..(y + 1) * w;
                for (((px, r), g), b) in row
                    .chunks_exact(3)
                    .zip(&mut r[span.clone()])
                    .zip(&mut g[span.clone()])
                    .zip(&mut b[span])
                {
                    *r = l0[px[0] as usize];
                    *g = l1[px[1] as usize];
                    *b = l2[px[2] as usize];
                }
            } else {
                for (x, px) in row.chunks_exact(c).enumerate() {
                    for (ch, &v) in px.iter().enumerate() {
                        out[ch * h * w + y * w + x] = lut[ch][v as usize];
                    }
                }
            }
        }
        Tensor::from_slice(&[1, c as u64, height as u64, width as u64], &out)
    }
}

/// Per channel, the 256 values `(v * scale - mean) / std` in `f32`, `v * scale` being
/// `v / n` when `scale` is `1 / n` for a whole `n` (torchvision's `ToTensor()` divides).
pub fn normalise_table(scale: f32, mean: &[f32], std: &[f32]) -> Vec<[f32; 256]> {
    let inv = 1.0 / scale as f64;
    let divisor =
        (scale > 0.0 && (inv - inv.round()).abs() < 1e-3 * inv).then(|| inv.round() as f32);
    mean.iter()
        .zip(std)
        .map(|(&m, &s)| {
            std::array::from_fn(|v| {
                let x = match divisor {
                    Some(d) => v as f32 / d,
                    None => v as f32 * scale,
                };
                (x - m) / s
            })
        })
        .collect()
}

/// torchvision's standard ImageNet transform: `Resize(256)`, `CenterCrop(224)`,
/// `ToTensor()`, `Normalize(IMAGENET_MEAN, IMAGENET_STD)`, as a `[1, 3, 224, 224]` tensor.
pub fn imagenet_transform(bytes: &[u8]) -> Result<Tensor, Error> {
    let img = decode_resize_center_crop(bytes, 3, 256, 224)?;
    img.to_chw_tensor(
        (0, 0),
        (224, 224),
        1.0 / 255.0,
        &IMAGENET_MEAN,
        &IMAGENET_STD,
    )
}

/// torchvision's `ToTensor()` alone: the decoded RGB image, no resize, scaled to [0, 1],
/// as a float32 `[1, 3, H, W]` tensor (what detection models take).
pub fn to_tensor(bytes: &[u8]) -> Result<Tensor, Error> {
    let img = decode_rgb(bytes)?;
    let (w, h) = (img.width, img.height);
    img.to_chw_tensor((0, 0), (w, h), 1.0 / 255.0, &[0.0; 3], &[1.0; 3])
}

/// The image a request carries, in any of TorchServe's forms: raw bytes or a form field
/// (`data`/`body`), base64 in a JSON body, or a raw body of base64 text.
pub fn image_bytes(req: &Request) -> Result<Cow<'_, [u8]>, Error> {
    let input = req.input_bytes()?;
    if image::guess_format(&input).is_ok() {
        return Ok(input);
    }
    match decode_base64(&input) {
        Some(bytes) if image::guess_format(&bytes).is_ok() => Ok(Cow::Owned(bytes)),
        _ => Err(Error::bad_request(
            "the input is not an image: expected a JPEG or PNG file",
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The window's values, one at a time, as torchvision computes them: `ToTensor()`'s
    /// division (here by 2, for a scale of 0.5), then `sub_(mean).div_(std)`, in `f32`.
    fn reference(
        img: &Image,
        (l, t): (u32, u32),
        (w, h): (u32, u32),
        mean: &[f32],
        std: &[f32],
    ) -> Vec<f32> {
        let c = img.channels as usize;
        let mut out = Vec::new();
        for ch in 0..c {
            for y in 0..h as usize {
                for x in 0..w as usize {
                    let v = img.pixels
                        [((t as usize + y) * img.width as usize + l as usize + x) * c + ch];
                    out.push((v as f32 / 2.0 - mean[ch]) / std[ch]);
                }
            }
        }
        out
    }

    #[test]
    fn to_chw_tensor_takes_the_window_channel_by_channel() {
        for channels in [1u32, 3] {
            let (width, height) = (7u32, 5u32);
            let pixels = (0..width * height * channels)
                .map(|i| (i * 37 % 251) as u8)
                .collect();
            let img = Image {
                width,
                height,
                channels,
                pixels,
            };
            let (mean, std) = (
                &[0.1, 0.2, 0.3][..channels as usize],
                &[0.9, 0.8, 0.7][..channels as usize],
            );
            let t = img.to_chw_tensor((2, 1), (4, 3), 0.5, mean, std).unwrap();
            assert_eq!(t.shape, vec![1, channels as u64, 3, 4]);
            assert_eq!(
                t.to_vec::<f32>().unwrap(),
                reference(&img, (2, 1), (4, 3), mean, std)
            );
        }
    }

    #[test]
    fn the_imagenet_values_are_torchvisions_op_order_not_a_multiply_add() {
        let lut = normalise_table(1.0 / 255.0, &IMAGENET_MEAN, &IMAGENET_STD);
        let mut differs = 0;
        for ch in 0..3 {
            for v in 0..256 {
                let exact = (v as f32 / 255.0 - IMAGENET_MEAN[ch]) / IMAGENET_STD[ch];
                assert_eq!(lut[ch][v].to_bits(), exact.to_bits(), "{ch} {v}");
                let fused = v as f32 * (1.0 / 255.0 / IMAGENET_STD[ch])
                    - IMAGENET_MEAN[ch] / IMAGENET_STD[ch];
                differs += (fused.to_bits() != exact.to_bits()) as u32;
            }
        }
        // The old multiply-add differs in the last bit for many values: the reason for
        // the table.
        assert!(differs > 0);
    }

    #[test]
    fn crop_takes_the_window_and_refuses_one_outside() {
        let img = Image {
            width: 4,
            height: 3,
            channels: 3,
            pixels: (0..36).collect(),
        };
        let c = img.crop(1, 1, 2, 2).unwrap();
        assert_eq!((c.width, c.height, c.channels), (2, 2, 3));
        assert_eq!(
            c.pixels,
            vec![15, 16, 17, 18, 19, 20, 27, 28, 29, 30, 31, 32]
        );
        assert_eq!(img.crop(0, 0, 4, 3).unwrap().pixels, img.pixels);
        for (l, t, w, h) in [
            (3, 0, 2, 1),
            (0, 2, 1, 2),
            (0, 0, 0, 1),
            (u32::MAX, 0, 2, 1),
        ] {
            let e = img.crop(l, t, w, h).unwrap_err();
            assert_eq!(e.status, 400, "{l} {t} {w} {h}");
        }
    }
}
