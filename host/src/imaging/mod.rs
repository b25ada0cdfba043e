//! Images as torchvision on Pillow prepares them, computed on the host for the `image`
//! WIT interface (and for tests and benches that need the very pixels a handler gets).
//!
//! - [`jpeg`]: JPEG decoding by libjpeg-turbo with Pillow's settings (C, on untrusted
//!   bytes, bounded; see that module).
//! - PNG: the `image` crate's decoder through the SDK (lossless, so any correct decoder
//!   gives Pillow's pixels for 8-bit files).
//! - Conversions as Pillow's `convert`: grey to RGB replicated, RGB to grey by ITU-R 601
//!   in Pillow's fixed point, CMYK (Adobe's inverted convention) to RGB by Pillow's
//!   formula.
//! - Resizing by the SDK's [`wasmserve_handler::resample`] (Pillow's arithmetic), sizes
//!   and crop offsets by torchvision's rules.
//!
//! [`Mode::Fast`] (`fastImageDecode: true` in model-config.yaml) trades exactness for
//! time: libjpeg decodes straight to a half, a quarter or an eighth of the size in the
//! DCT domain when that still leaves the resize room to average (what Pillow's `draft`
//! does; see [`scaling`]), and the resize runs from there, to the sizes and crop that
//! the file's own size gives.

pub mod jpeg;

use wasmserve_handler::Tensor;
use wasmserve_handler::vision::{IMAGENET_MEAN, IMAGENET_STD, Image, MAX_PIXELS, MAX_SIDE};

/// How a model's images are decoded.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Mode {
    /// Pillow's pixels, bit for bit (the default).
    #[default]
    Exact,
    /// DCT-domain downscaling during the JPEG decode (by 1/2, 1/4 or 1/8, see
    /// [`scaling`]): faster for files over 8/3 of the target's size, pixels close to
    /// Pillow's but not equal (the same for smaller files).
    Fast,
}

/// `bytes` (JPEG or PNG) decoded into `channels` 1 or 3, as Pillow's
/// `Image.open(bytes).convert("L" | "RGB")`.
pub fn decode(bytes: &[u8], channels: u32) -> Result<Image, String> {
    decode_scaled(bytes, channels, Mode::Exact, 0).map(|(img, _)| img)
}

/// [`decode`], a JPEG in the fast mode decoded at a reduced size for a resize of its
/// shorter side to `size` ([`scaling`]); with the file's own size.
fn decode_scaled(
    bytes: &[u8],
    channels: u32,
    mode: Mode,
    size: u32,
) -> Result<(Image, (u32, u32)), String> {
    if !matches!(channels, 1 | 3) {
        return Err(format!(
            "cannot decode into {channels} channels; use 1 or 3"
        ));
    }
    if !jpeg::is_jpeg(bytes) {
        let img = wasmserve_handler::vision::native::decode(bytes, 3)?;
        let own = (img.width, img.height);
        return Ok((if channels == 1 { to_luma(img) } else { img }, own));
    }
    let (min_half, min_quarter) = scaling(mode, size);
    let settings = jpeg::Settings {
        channels: if channels == 1 { 0 } else { 3 },
        min_half,
        min_quarter,
        fast: false,
    };
    let d = jpeg::decode(bytes, settings)?;
    let own = d.source_size;
    let img = Image {
        width: d.width,
        height: d.height,
        channels: d.channels,
        pixels: d.pixels,
    };
    let img = if img.channels == 4 {
        cmyk_to_rgb(img)
    } else {
        img
    };
    let img = match (img.channels, channels) {
        (3, 1) => to_luma(img),
        _ => img,
    };
    Ok((img, own))
}

/// Pillow's `convert("L")` of RGB: `(r * 19595 + g * 38470 + b * 7471 + 0x8000) >> 16`.
fn to_luma(img: Image) -> Image {
    if img.channels == 1 {
        return img;
    }
    let pixels = img
        .pixels
        .chunks_exact(3)
        .map(|p| {
            ((p[0] as u32 * 19595 + p[1] as u32 * 38470 + p[2] as u32 * 7471 + 0x8000) >> 16) as u8
        })
        .collect();
    Image {
        channels: 1,
        pixels,
        ..img
    }
}

/// Pillow's CMYK JPEG as RGB: the stored values inverted (rawmode `CMYK;I`, Adobe's
/// convention), then `convert("RGB")`: `nk - c * nk / 255` with `nk = 255 - k`, in
/// Pillow's rounding (`MULDIV255`).
fn cmyk_to_rgb(img: Image) -> Image {
    let muldiv255 = |a: u32, b: u32| {
        let t = a * b + 128;
        ((t >> 8) + t) >> 8
    };
    let mut pixels = Vec::with_capacity(img.pixels.len() / 4 * 3);
    for p in img.pixels.chunks_exact(4) {
        let (c, m, y, k) = (
            255 - p[0] as u32,
            255 - p[1] as u32,
            255 - p[2] as u32,
            255 - p[3] as u32,
        );
        let nk = 255 - k;
        for v in [c, m, y] {
            pixels.push((nk - muldiv255(v, nk)) as u8);
        }
    }
    Image {
        channels: 3,
        pixels,
        ..img
    }
}

/// How far libjpeg may scale a JPEG down for a resize of its shorter side to `size`
/// (`jpeg::Settings`' `min_half`, `min_quarter`): not at all in the exact mode. In the
/// fast one, by 1/2 when that leaves at least 4/3 of the target, by 1/4 or 1/8 when
/// that leaves at least twice the target. The DCT-domain scaling is sharper than
/// Pillow's antialiased filter, so the resize after it must still average; measured on
/// photos re-encoded at shorter sides from 600 to 1,600 pixels, the values of the
/// 224-pixel crop moved by under 0.7 of a level on average from Pillow's wherever these
/// rules scale, but by up to 1.9 levels at 1/2 leaving 1.25× the target, and up to 1.8
/// at 1/4 leaving 1.37×. Scaling by 3/8 or 6/8 is not used: libjpeg-turbo has no SIMD
/// IDCT for them, and a 720-pixel file decoded at 6/8 took 1.8× as long as at full size.
fn scaling(mode: Mode, size: u32) -> (u32, u32) {
    match mode {
        Mode::Exact => (0, 0),
        Mode::Fast => (size.saturating_mul(4).div_ceil(3), size.saturating_mul(2)),
    }
}

/// torchvision's `Resize(size)` size for a `w` × `h` image: the shorter side `size`, the
/// longer `int(size * long / short)`. Fails when the result is over the limits.
pub fn shorter_side_size(w: u32, h: u32, size: u32) -> Result<(u32, u32), String> {
    if size == 0 || size > MAX_SIDE || w == 0 || h == 0 {
        return Err(format!(
            "cannot resize a {w}x{h} image to a shorter side of {size}"
        ));
    }
    let (short, long) = (w.min(h) as u64, w.max(h) as u64);
    let new_long = size as u64 * long / short;
    if new_long > MAX_SIDE as u64 || new_long * size as u64 > MAX_PIXELS {
        return Err(format!(
            "a {w}x{h} image resized to a shorter side of {size} is too large"
        ));
    }
    Ok(if w <= h {
        (size, new_long as u32)
    } else {
        (new_long as u32, size)
    })
}

/// Decode and `Resize(size)` in one, as the `image` interface's
/// `decode-resize-shorter`.
pub fn decode_resize_shorter(
    bytes: &[u8],
    channels: u32,
    size: u32,
    mode: Mode,
) -> Result<Image, String> {
    let (img, (w, h)) = decode_for_resize(bytes, channels, size, mode)?;
    img.resize_natively(w, h).map_err(|e| e.message)
}

/// The decoded image (scaled in the fast mode) and the size `Resize(size)` gives it,
/// from the file's own size.
fn decode_for_resize(
    bytes: &[u8],
    channels: u32,
    size: u32,
    mode: Mode,
) -> Result<(Image, (u32, u32)), String> {
    if size == 0 || size > MAX_SIDE {
        return Err(format!("cannot resize the shorter side to {size}"));
    }
    let (img, (own_w, own_h)) = decode_scaled(bytes, channels, mode, size)?;
    Ok((img, shorter_side_size(own_w, own_h, size)?))
}

/// torchvision's `CenterCrop` offsets `(left, top)` of a `crop` × `crop` window:
/// `int(round((dim - crop) / 2.0))`, Python's round (ties to even).
pub fn center_offsets(w: u32, h: u32, crop: u32) -> Option<(u32, u32)> {
    let off = |dim: u32| {
        dim.checked_sub(crop)
            .map(|d| (d as f64 / 2.0).round_ties_even() as u32)
    };
    Some((off(w)?, off(h)?))
}

/// Decode, `Resize(size)` and `CenterCrop(crop)` in one, as the `image` interface's
/// `decode-resize-center-crop`: the resize computes the crop's window alone (the same
/// pixels as resizing the whole image, then cropping).
pub fn decode_resize_center_crop(
    bytes: &[u8],
    channels: u32,
    size: u32,
    crop: u32,
    mode: Mode,
) -> Result<Image, String> {
    if crop == 0 || crop > size {
        return Err(format!(
            "cannot crop {crop}x{crop} from an image whose shorter side is {size}"
        ));
    }
    let (img, (w, h)) = decode_for_resize(bytes, channels, size, mode)?;
    let (left, top) = center_offsets(w, h, crop).ok_or("the image is smaller than the crop")?;
    let pixels = wasmserve_handler::resample::resize_window(
        &img.pixels,
        (
            img.width as usize,
            img.height as usize,
            img.channels as usize,
        ),
        (w as usize, h as usize),
        (left as usize, top as usize, crop as usize, crop as usize),
    );
    Ok(Image {
        width: crop,
        height: crop,
        channels: img.channels,
        pixels,
    })
}

/// The whole ImageNet transform of the built-in `image_classifier` (`Resize(256)`,
/// `CenterCrop(224)`, `ToTensor()`, `Normalize`) computed here: the tensor that the
/// sandboxed handler sends to the model, bit for bit, for tests and benches.
pub fn imagenet_transform(bytes: &[u8], mode: Mode) -> Result<Tensor, String> {
    decode_resize_center_crop(bytes, 3, 256, 224, mode)?
        .to_chw_tensor(
            (0, 0),
            (224, 224),
            1.0 / 255.0,
            &IMAGENET_MEAN,
            &IMAGENET_STD,
        )
        .map_err(|e| e.message)
}
