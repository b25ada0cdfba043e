//! `wasmserve handler new`: writes a ready-to-build Rust handler project (Cargo.toml on
//! the SDK, a working pass-through handler, the wasm32-wasip2 build settings, a README
//! with the commands to build, archive and serve it).

use std::path::{Path, PathBuf};

use anyhow::{Context as _, bail};

const CARGO_TOML: &str = include_str!("templates/Cargo.toml.in");
const CARGO_CONFIG: &str = include_str!("templates/config.toml.in");
const LIB_RS: &str = include_str!("templates/lib.rs.in");
const README: &str = include_str!("templates/README.md.in");

/// The SDK this binary was built with, for the generated project's path dependency.
fn default_sdk() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../handlers/sdk")
}

/// Writes the project `dir/name` and returns its path.
pub fn new_handler(name: &str, dir: &Path, sdk: Option<&Path>) -> anyhow::Result<PathBuf> {
    crate::archive::validate_model_name(name).map_err(anyhow::Error::msg)?;
    if name.contains('.') {
        bail!("handler name {name:?} may not contain '.' (it becomes a Rust crate name)");
    }
    let sdk = sdk.map(Path::to_path_buf).unwrap_or_else(default_sdk);
    let sdk = sdk.canonicalize().with_context(|| {
        format!(
            "the handler SDK is not at {}; pass --sdk with the path of wasmserve's handlers/sdk",
            sdk.display()
        )
    })?;
    let project = dir.join(name);
    if project.exists() {
        bail!(
            "{} already exists; choose another name or --dir",
            project.display()
        );
    }
    let crate_name = name.replace('-', "_");
    let fill = |t: &str| {
        t.replace("{{name}}", name)
            .replace("{{crate}}", &crate_name)
            .replace("{{sdk}}", &sdk.display().to_string())
    };
    std::fs::create_dir_all(project.join("src"))
        .with_context(|| format!("creating {}", project.display()))?;
    std::fs::create_dir_all(project.join(".cargo"))?;
    std::fs::write(project.join("Cargo.toml"), fill(CARGO_TOML))?;
    std::fs::write(project.join(".cargo/config.toml"), fill(CARGO_CONFIG))?;
    std::fs::write(project.join("src/lib.rs"), fill(LIB_RS))?;
    std::fs::write(project.join("README.md"), fill(README))?;
    std::fs::write(project.join(".gitignore"), "/target\n*.mar\n")?;
    Ok(project)
}
