//! Fuzzes the host's image decoding (`host/src/imaging`): libjpeg-turbo behind
//! `host/cpp/jpeg.c` for JPEG, the SDK's decoder for PNG, the conversions and the
//! Pillow resampler, as the `image` interface runs them for a handler on untrusted bytes.
//!
//! The first input byte picks what is asked (`byte % 5`): 0 `decode` into RGB, 1 into
//! grey, 2 `decode_resize_shorter(256)` exact, 3 the same fast (DCT scaling), 4
//! `decode_resize_center_crop(256, 224)`, fast when the byte's top bit is set. The rest
//! is the file; inputs that do not start with a JPEG's SOI get one, so that most of the
//! time goes into the JPEG decoder. Beyond "no crash, no sanitizer report": a success
//! has the size it says, within the limits.

#![no_main]

use libfuzzer_sys::fuzz_target;

#[allow(dead_code)] // the parts of the module this target does not call
#[path = "../../../host/src/imaging/mod.rs"]
mod imaging;

use wasmserve_handler::vision::{MAX_PIXELS, MAX_SIDE};

fuzz_target!(|data: &[u8]| {
    let Some((&selector, rest)) = data.split_first() else {
        return;
    };
    let mut bytes = rest.to_vec();
    if !bytes.starts_with(&[0xFF, 0xD8]) && !bytes.starts_with(b"\x89PNG") {
        bytes.splice(0..0, [0xFF, 0xD8, 0xFF]);
    }
    let mode = if selector & 0x80 != 0 {
        imaging::Mode::Fast
    } else {
        imaging::Mode::Exact
    };
    let result = match selector % 5 {
        0 => imaging::decode(&bytes, 3),
        1 => imaging::decode(&bytes, 1),
        2 => imaging::decode_resize_shorter(&bytes, 3, 256, imaging::Mode::Exact),
        3 => imaging::decode_resize_shorter(&bytes, 3, 256, imaging::Mode::Fast),
        _ => imaging::decode_resize_center_crop(&bytes, 3, 256, 224, mode),
    };
    if let Ok(img) = result {
        assert!(matches!(img.channels, 1 | 3));
        assert!(img.width > 0 && img.height > 0);
        assert!(img.width <= MAX_SIDE && img.height <= MAX_SIDE);
        assert!(img.width as u64 * img.height as u64 <= MAX_PIXELS);
        assert_eq!(
            img.pixels.len() as u64,
            img.width as u64 * img.height as u64 * img.channels as u64
        );
        match selector % 5 {
            2 | 3 => assert_eq!(img.width.min(img.height), 256),
            4 => assert_eq!((img.width, img.height), (224, 224)),
            _ => {}
        }
    }
});
