//! What `wasmserve archive --handler` accepts, made ready to pack: a component built
//! for `wasm32-wasip2`, a core module built for `wasm32-wasip1` (made into a component
//! here, see [`crate::sandbox::adapt`]), a Python handler (built by componentize-py,
//! see [`super::python`]), or a built-in handler's name. Every component is checked
//! against the handler worlds before it is packed, so that a bad one fails now rather
//! than when a server loads the archive.

use std::path::{Path, PathBuf};

use anyhow::{Context as _, bail};

use crate::builtin;
use crate::sandbox::{HandlerRuntime, World, adapt};

/// A handler ready to pack.
pub struct Prepared {
    /// The manifest's `handler`: the component's file name, or the built-in's name.
    name: String,
    /// The component file to pack (`None` for a built-in).
    file: Option<PathBuf>,
    /// The world of the component (a built-in is a `handler`).
    world: World,
    /// Holds a component made here (from a core module or Python) until it is packed.
    _made: Option<tempfile::TempDir>,
}

impl Prepared {
    /// The manifest's `handler` value.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The world the handler targets: a pipeline needs no model file.
    pub fn world(&self) -> World {
        self.world
    }

    /// The component file to pack, if any.
    pub fn file(&self) -> Option<&Path> {
        self.file.as_deref()
    }
}

/// Resolves `--handler ARG`.
pub fn prepare(arg: &str) -> anyhow::Result<Prepared> {
    let path = PathBuf::from(arg);
    let is = |ext: &str| path.extension().is_some_and(|e| e == ext);
    if is("wasm") {
        let wasm = read(&path)?;
        if crate::sandbox::is_component(&wasm) {
            let world = check(&wasm, &path)?;
            return Ok(Prepared {
                name: file_name(&path),
                file: Some(path),
                world,
                _made: None,
            });
        }
        let component =
            adapt::component_from_module(&wasm).with_context(|| format!("--handler {arg}"))?;
        let world = check(&component, &path)?;
        return made(&file_name(&path), &component, world);
    }
    if builtin::component(arg).is_some() {
        return Ok(Prepared {
            name: arg.to_string(),
            file: None,
            world: World::Handler,
            _made: None,
        });
    }
    if is("py") {
        if !path.is_file() {
            bail!("--handler {arg} does not exist or is not a file");
        }
        let component = super::python::build(&path).with_context(|| format!("--handler {arg}"))?;
        let world = check(&component, &path)?;
        let stem = path.file_stem().unwrap_or_default().to_string_lossy();
        return made(&format!("{stem}.wasm"), &component, world);
    }
    bail!(
        "--handler {arg:?} is neither a .wasm component or wasm32-wasip1 module, a Python \
         handler (.py) nor a built-in handler ({})",
        builtin::names().join(", ")
    )
}

fn read(path: &Path) -> anyhow::Result<Vec<u8>> {
    if !path.is_file() {
        bail!(
            "--handler {} does not exist or is not a file",
            path.display()
        );
    }
    std::fs::read(path).with_context(|| format!("reading {}", path.display()))
}

fn file_name(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "handler.wasm".into())
}

/// Compiles and links the component as a server would; the world it targets.
fn check(component: &[u8], path: &Path) -> anyhow::Result<World> {
    let compiled = HandlerRuntime::for_checking()?
        .compile(component)
        .with_context(|| format!("--handler {}", path.display()))?;
    Ok(compiled.world())
}

/// A component made here, written to a temporary folder under `name` for packing.
fn made(name: &str, component: &[u8], world: World) -> anyhow::Result<Prepared> {
    let dir = tempfile::tempdir().context("creating a temporary folder")?;
    let file = dir.path().join(name);
    std::fs::write(&file, component).with_context(|| format!("writing {}", file.display()))?;
    Ok(Prepared {
        name: name.to_string(),
        file: Some(file),
        world,
        _made: Some(dir),
    })
}
