//! The built-in handlers: components built from `handlers/` and embedded in the binary,
//! so that `--handler image_classifier` needs no file.

/// `(name, component bytes)` of each built-in handler.
macro_rules! builtins {
    ($($name:literal),* $(,)?) => {
        &[$(($name, include_bytes!(concat!(env!("WASMSERVE_GUEST_DIR"), "/", $name, ".wasm")))),*]
    };
}

const BUILTINS: &[(&str, &[u8])] = builtins![
    "image_classifier",
    "image_segmenter",
    "object_detector",
    "text_classifier",
    "base_handler"
];

/// The component of the built-in handler `name`.
pub fn component(name: &str) -> Option<&'static [u8]> {
    BUILTINS
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, bytes)| *bytes)
}

/// The names of all built-in handlers.
pub fn names() -> Vec<&'static str> {
    BUILTINS.iter().map(|(n, _)| *n).collect()
}
