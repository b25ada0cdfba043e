//! Fuzzes the host's image decoding (`host/src/imaging`): libjpeg-turbo behind
//! `host/cpp/jpeg.c` for JPEG, the SDK's decoder for PNG, the conversions and the
//! Pillow resampler, as the `image` interface runs them for a handler on untrusted bytes.
//!
//! The first input byte picks what is asked (`byte % 4`): 0 `decode` into RGB, 1 into
//! grey, 2 `decode_resize_shorter(256)` exact, 3 the same fast (DCT scaling). The rest
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
    let result = match selector % 4 {
        0 => imaging::decode(&bytes, 3),
        1 => imaging::decode(&bytes, 1),
        2 => imaging::decode_resize_shorter(&bytes, 3, 256, imaging::Mode::Exact),
        _ => imaging::decode_resize_shorter(&bytes, 3, 256, imaging::Mode::Fast),
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
        if selector % 4 >= 2 {
            assert_eq!(img.width.min(img.height), 256);
        }
    }
});
