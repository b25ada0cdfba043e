//! The `image` interface: decoding, resizing and cropping on the host, natively, with Pillow's
//! pixels (`crate::imaging`).

use super::state::HostState;

use super::bindings::image::Image as WitImage;

fn to_wit(img: wasmserve_handler::vision::Image) -> WitImage {
    WitImage {
        width: img.width,
        height: img.height,
        channels: img.channels as u8,
        pixels: img.pixels,
    }
}

/// The `image` interface: JPEG by libjpeg-turbo as Pillow sets it up, PNG by the
/// SDK's decoder, resizing by the SDK's Pillow resampler. Decoding is bounded by the
/// SDK's pixel limits, resizing by the same limit on the target size: a host call cannot
/// be interrupted, so its work must be bounded.
impl super::bindings::image::Host for HostState {
    fn decode(&mut self, data: Vec<u8>, channels: u8) -> Result<WitImage, String> {
        crate::imaging::decode(&data, channels.into()).map(to_wit)
    }

    fn resize(&mut self, img: WitImage, width: u32, height: u32) -> Result<WitImage, String> {
        use wasmserve_handler::vision::{MAX_PIXELS, MAX_SIDE};
        if width > MAX_SIDE || height > MAX_SIDE || width as u64 * height as u64 > MAX_PIXELS {
            return Err(format!(
                "cannot resize to {width}x{height}: over the size limit"
            ));
        }
        let expected = img.width as u64 * img.height as u64 * img.channels as u64;
        if img.pixels.len() as u64 != expected {
            return Err(format!(
                "a {}x{} image with {} channel(s) needs {expected} bytes, not {}",
                img.width,
                img.height,
                img.channels,
                img.pixels.len()
            ));
        }
        let img = wasmserve_handler::vision::Image {
            width: img.width,
            height: img.height,
            channels: img.channels.into(),
            pixels: img.pixels,
        };
        img.resize_natively(width, height)
            .map(to_wit)
            .map_err(|e| e.to_string())
    }

    fn decode_resize_shorter(
        &mut self,
        data: Vec<u8>,
        channels: u8,
        size: u32,
    ) -> Result<WitImage, String> {
        crate::imaging::decode_resize_shorter(&data, channels.into(), size, self.image_mode)
            .map(to_wit)
    }

    fn decode_resize_center_crop(
        &mut self,
        data: Vec<u8>,
        channels: u8,
        size: u32,
        crop: u32,
    ) -> Result<WitImage, String> {
        crate::imaging::decode_resize_center_crop(
            &data,
            channels.into(),
            size,
            crop,
            self.image_mode,
        )
        .map(to_wit)
    }
}
