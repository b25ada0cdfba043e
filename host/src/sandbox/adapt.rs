//! Core modules into components: a handler built for `wasm32-wasip1` (`wasm32-wasi`) is
//! a core WebAssembly module that imports WASI preview 1 and carries its WIT world in a
//! `component-type` custom section (the SDK and wit-bindgen put it there). wit-component
//! reads that section, wraps the module in a component of that world and plugs WASI
//! preview 1 into preview 2 with the adapter of the same wasmtime release (the reactor
//! adapter: a handler is a library, not a command). The result is checked against the
//! worlds like any component, by [`super::HandlerRuntime::compile`].

use wasi_preview1_component_adapter_provider::{
    WASI_SNAPSHOT_PREVIEW1_ADAPTER_NAME, WASI_SNAPSHOT_PREVIEW1_REACTOR_ADAPTER,
};

/// Why a core module cannot become a handler component.
#[derive(Debug, thiserror::Error)]
pub enum AdaptError {
    #[error("it is not a WebAssembly core module")]
    NotAModule,
    /// No WIT world in the module, or one of another package.
    #[error(
        "the core module was not built for the wasmserve:handler world: {0}. Build it as a \
         `cdylib` against the wasmserve-handler SDK (`export_handler!`), or with wit-bindgen's \
         `generate!` for world `handler` or `pipeline` of wit/handler.wit, then \
         `cargo build --target wasm32-wasip1 --release`; `wasmserve handler new NAME --target \
         wasm32-wasip1` writes such a project"
    )]
    NoWorld(String),
    #[error("cannot make the core module into a component: {0}")]
    Encode(String),
}

/// The package a handler's world belongs to.
const PACKAGE: (&str, &str) = ("wasmserve", "handler");

/// Makes the wasip1 core module `module` into a component of the world it was built for.
pub fn component_from_module(module: &[u8]) -> Result<Vec<u8>, AdaptError> {
    if !module.starts_with(b"\0asm\x01\0\0\0") {
        return Err(AdaptError::NotAModule);
    }
    check_world(module)?;
    wit_component::ComponentEncoder::default()
        .validate(true)
        .module(module)
        .and_then(|e| {
            e.adapter(
                WASI_SNAPSHOT_PREVIEW1_ADAPTER_NAME,
                WASI_SNAPSHOT_PREVIEW1_REACTOR_ADAPTER,
            )
        })
        .and_then(|e| e.encode())
        .map_err(|e| AdaptError::Encode(format!("{e:#}")))
}

/// Checks that the module's custom sections hold a world of `wasmserve:handler`.
fn check_world(module: &[u8]) -> Result<(), AdaptError> {
    let (found, bindgen) = wit_component::metadata::decode(module).map_err(|e| {
        AdaptError::NoWorld(format!("its WIT type information is unreadable ({e:#})"))
    })?;
    if found.is_none() {
        return Err(AdaptError::NoWorld(
            "it carries no WIT world (no `component-type` custom section)".into(),
        ));
    }
    let packages: Vec<String> = bindgen
        .resolve
        .packages
        .iter()
        .map(|(_, p)| &p.name)
        .filter(|n| n.namespace != "root")
        .map(|n| n.to_string())
        .collect();
    let ours = bindgen
        .resolve
        .packages
        .iter()
        .any(|(_, p)| (p.name.namespace.as_str(), p.name.name.as_str()) == PACKAGE);
    if ours {
        Ok(())
    } else {
        Err(AdaptError::NoWorld(format!(
            "its WIT world uses {}, not wasmserve:handler",
            packages.join(", ")
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The smallest module: no imports, no exports, no custom sections.
    const EMPTY_MODULE: &[u8] = b"\0asm\x01\0\0\0";

    #[test]
    fn a_module_without_a_world_is_refused_with_the_way_to_build_it() {
        let e = component_from_module(EMPTY_MODULE).unwrap_err().to_string();
        assert!(e.contains("no WIT world"), "{e}");
        assert!(
            e.contains("wasm32-wasip1") && e.contains("export_handler!"),
            "{e}"
        );
    }

    #[test]
    fn bytes_that_are_no_module_are_refused() {
        assert!(matches!(
            component_from_module(b"\0asm\x0d\0\x01\0"),
            Err(AdaptError::NotAModule)
        ));
        assert!(matches!(
            component_from_module(b"hello"),
            Err(AdaptError::NotAModule)
        ));
    }
}
