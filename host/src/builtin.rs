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

/// The component of the built-in handler `name`, spelled as wasmserve does
/// (`image_classifier`) or as TorchServe names its own built-in modules
/// (`image_classifier:handle`, `ts/torch_handler/image_classifier.py[:handle]`,
/// `ts.torch_handler.image_classifier`). A Python file of the user's own is not a
/// built-in, whatever its name.
pub fn component(name: &str) -> Option<&'static [u8]> {
    let module = name.split_once(':').map_or(name, |(m, _)| m);
    let builtin = if let Some(file) = module.strip_suffix(".py") {
        let (dir, stem) = file.rsplit_once('/')?;
        (dir == "torch_handler" || dir.ends_with("/torch_handler")).then_some(stem)?
    } else if let Some((package, stem)) = module.rsplit_once('.') {
        (package == "ts.torch_handler").then_some(stem)?
    } else {
        module
    };
    BUILTINS
        .iter()
        .find(|(n, _)| *n == builtin)
        .map(|(_, bytes)| *bytes)
}

/// The names of all built-in handlers.
pub fn names() -> Vec<&'static str> {
    BUILTINS.iter().map(|(n, _)| *n).collect()
}

#[cfg(test)]
mod tests {
    #[test]
    fn torchserves_spellings_of_its_builtins() {
        for name in [
            "image_classifier",
            "image_classifier:handle",
            "ts/torch_handler/image_classifier.py",
            "serve/ts/torch_handler/image_classifier.py:handle",
            "ts.torch_handler.image_classifier",
        ] {
            assert!(super::component(name).is_some(), "{name}");
        }
        for name in [
            "my_handlers/image_classifier.py",
            "image_classifier.py",
            "x.image_classifier",
            "nope",
        ] {
            assert!(super::component(name).is_none(), "{name}");
        }
    }
}
