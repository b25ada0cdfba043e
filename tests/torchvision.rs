//! The default image path gives torchvision's tensors on Pillow, bit for bit: each step
//! (decode, `Resize(256)`, `CenterCrop(224)`, `ToTensor()` + `Normalize`) against the
//! digests that `tests/fixtures/torchvision/make.py` recorded with torch 2.11,
//! torchvision 0.26 and Pillow 11 from PyPI, on the shared photos and on synthetic JPEGs
//! of every common kind (subsamplings, progressive, grey, CMYK, odd and tiny sizes); then
//! the same through the sandbox, as the built-in image_classifier sends it to the model;
//! then `fastImageDecode`'s tensors held to the tolerance of the answers.

mod common;

use std::path::PathBuf;

use common::*;
use sha2::{Digest, Sha256};
use wasmserve::imaging::{self, Mode};

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/torchvision")
}

fn sha(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// `(name, file bytes, recorded digests)` of every image in expected.json: shared photos
/// read where they are (`images/...`), synthetic ones from the fixture folder.
fn cases() -> Vec<(String, Vec<u8>, serde_json::Value)> {
    let expected: serde_json::Value =
        serde_json::from_slice(&std::fs::read(fixtures().join("expected.json")).unwrap()).unwrap();
    let images = expected["images"].as_object().unwrap();
    assert!(
        images.len() >= 40,
        "expected.json holds {} images",
        images.len()
    );
    images
        .iter()
        .map(|(name, e)| {
            let path = match name.strip_prefix("synthetic/") {
                Some(file) => fixtures().join("synthetic").join(file),
                None => asset(name),
            };
            (name.clone(), std::fs::read(path).unwrap(), e.clone())
        })
        .collect()
}

#[test]
fn every_step_is_torchvisions_on_pillow_bit_for_bit() {
    let mut wrong = Vec::new();
    for (name, bytes, e) in cases() {
        let digest = |key: &str| e[key].as_str().unwrap().to_string();
        let decoded = imaging::decode(&bytes, 3).unwrap();
        let size = [decoded.width as u64, decoded.height as u64];
        assert_eq!(e["size"], serde_json::json!(size), "{name}");
        let (w, h) = imaging::shorter_side_size(decoded.width, decoded.height, 256).unwrap();
        assert_eq!(e["resized_size"], serde_json::json!([w, h]), "{name}");
        let resized = decoded.resize_natively(w, h).unwrap();
        let (left, top) = imaging::center_offsets(w, h, 224).unwrap();
        let crop = resized.crop(left, top, 224, 224).unwrap();
        let window = imaging::decode_resize_center_crop(&bytes, 3, 256, 224, Mode::Exact).unwrap();
        let tensor = imaging::imagenet_transform(&bytes, Mode::Exact).unwrap();
        assert_eq!(tensor.shape, [1, 3, 224, 224]);
        // (what is checked, the recorded digest it must equal, its digest here)
        for (step, key, got) in [
            ("decoded", "decoded", sha(&decoded.pixels)),
            ("resized", "resized", sha(&resized.pixels)),
            ("crop", "crop", sha(&crop.pixels)),
            ("decode_resize_center_crop", "crop", sha(&window.pixels)),
            ("tensor", "tensor", sha(&tensor.data)),
        ] {
            if got != digest(key) {
                wrong.push(format!("{name}: {step}"));
            }
        }
    }
    assert!(wrong.is_empty(), "not torchvision's: {wrong:?}");
}

#[test]
fn one_call_crops_what_resizing_then_cropping_gives() {
    // `decode-resize-center-crop` computes the window alone: the same pixels as the
    // whole resize then the crop, in grey and RGB, exact and fast, at other sizes than
    // ImageNet's; a crop larger than the resized shorter side is refused.
    for (name, bytes, _) in cases().into_iter().step_by(3) {
        for (channels, size, crop, mode) in [
            (3, 256, 224, Mode::Exact),
            (1, 256, 224, Mode::Exact),
            (3, 300, 300, Mode::Exact),
            (3, 64, 31, Mode::Exact),
            (3, 256, 224, Mode::Fast),
        ] {
            let whole = imaging::decode_resize_shorter(&bytes, channels, size, mode).unwrap();
            let (left, top) = imaging::center_offsets(whole.width, whole.height, crop).unwrap();
            let want = whole.crop(left, top, crop, crop).unwrap();
            let got =
                imaging::decode_resize_center_crop(&bytes, channels, size, crop, mode).unwrap();
            assert_eq!(
                (got.width, got.height, got.channels),
                (crop, crop, channels),
                "{name}"
            );
            assert!(
                got.pixels == want.pixels,
                "{name}: {channels} channel(s), {size}/{crop}, {mode:?}"
            );
        }
        assert!(imaging::decode_resize_center_crop(&bytes, 3, 224, 225, Mode::Exact).is_err());
    }
}

#[test]
fn a_changed_pixel_changes_the_digest() {
    // The comparison above can fail: one level on one value of the kitten's tensor
    // input is another digest.
    let (name, bytes, e) = cases()
        .into_iter()
        .find(|(n, ..)| n == "images/kitten.jpg")
        .unwrap();
    let decoded = imaging::decode(&bytes, 3).unwrap();
    let (w, h) = imaging::shorter_side_size(decoded.width, decoded.height, 256).unwrap();
    let mut resized = decoded.resize_natively(w, h).unwrap();
    assert_eq!(
        sha(&resized.pixels),
        e["resized"].as_str().unwrap(),
        "{name}"
    );
    resized.pixels[1000] ^= 1;
    assert_ne!(sha(&resized.pixels), e["resized"].as_str().unwrap());
}

#[test]
fn the_sandboxed_image_classifier_sends_torchvisions_tensor() {
    // The built-in handler's preprocess (image_classifier's code: the host's decode and
    // resize, the crop and normalisation in the guest) run in the sandbox, its tensor
    // compared with torchvision's digest.
    use wasmserve::sandbox::Tensor;
    let dir = tempfile::tempdir().unwrap();
    let (_runtime, component, sandbox) = builtin_sandbox("image_classifier", dir.path());
    let mut instance = component.instantiate(&sandbox).unwrap();
    let mut wrong = Vec::new();
    for (name, bytes, e) in cases() {
        let tensors: Vec<Tensor> = instance
            .preprocess(&body_request(bytes), None)
            .unwrap()
            .unwrap();
        assert_eq!(tensors.len(), 1, "{name}");
        assert_eq!(tensors[0].shape, [1, 3, 224, 224], "{name}");
        if sha(&tensors[0].data) != e["tensor"].as_str().unwrap() {
            wrong.push(name);
        }
    }
    assert!(
        wrong.is_empty(),
        "the sandbox's tensor is not torchvision's: {wrong:?}"
    );
}

#[test]
fn the_fast_decode_stays_close() {
    // fastImageDecode: another decode (DCT-domain scaling by 1/2 for JPEGs whose
    // halved shorter side is still 4/3 of the target), so other pixels: on average
    // within one level of Pillow's, and the same pixels for files too small to be
    // scaled. Its effect on the answers is tabled by bench/imaging.rs.
    let level = 1.0 / 255.0 / 0.229;
    let mut scaled = 0;
    for (name, bytes, e) in cases() {
        let exact = imaging::imagenet_transform(&bytes, Mode::Exact).unwrap();
        let fast = imaging::imagenet_transform(&bytes, Mode::Fast).unwrap();
        let (a, b) = (
            exact.to_vec::<f32>().unwrap(),
            fast.to_vec::<f32>().unwrap(),
        );
        let mean = a.iter().zip(&b).map(|(x, y)| (x - y).abs()).sum::<f32>() / a.len() as f32;
        assert!(
            mean <= level,
            "{name}: mean difference {} levels",
            mean / level
        );
        let (w, h) = (
            e["size"][0].as_u64().unwrap(),
            e["size"][1].as_u64().unwrap(),
        );
        let halved = w.min(h).div_ceil(2);
        if name.ends_with(".jpg") && halved >= (4 * 256u64).div_ceil(3) {
            scaled += 1;
            assert!(a != b, "{name}: not scaled");
        } else {
            assert!(a == b, "{name}: too small to be scaled, yet other pixels");
        }
    }
    assert!(scaled >= 2, "{scaled} images scaled");
}
