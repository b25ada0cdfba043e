//! `wasmserve handler new`: writes a ready-to-build Rust handler project, wherever the
//! binary is. The project holds everything it needs besides crates.io: the SDK this
//! binary was built with, embedded in it and written under `vendor/wasmserve-handler`,
//! the WIT package under `wit/` (where the SDK's `../../wit` finds it), a working
//! pass-through handler, the build settings for the chosen target (`wasm32-wasip2`, or
//! `wasm32-wasip1`, whose core module `wasmserve archive` makes into a component), and a
//! README with the commands to build, archive and serve it.

use std::fmt;
use std::path::{Path, PathBuf};

use anyhow::{Context as _, bail};

const CARGO_TOML: &str = include_str!("templates/Cargo.toml.in");
const CARGO_CONFIG: &str = include_str!("templates/config.toml.in");
const LIB_RS: &str = include_str!("templates/lib.rs.in");
const README: &str = include_str!("templates/README.md.in");

/// Where the vendored SDK goes, relative to the project.
const VENDORED_SDK: &str = "vendor/wasmserve-handler";

/// The SDK's files as this binary was built with them, by path relative to the SDK.
const SDK_FILES: &[(&str, &str)] = &[
    ("Cargo.toml", include_str!("../../handlers/sdk/Cargo.toml")),
    ("src/lib.rs", include_str!("../../handlers/sdk/src/lib.rs")),
    (
        "src/output.rs",
        include_str!("../../handlers/sdk/src/output.rs"),
    ),
    (
        "src/pipeline.rs",
        include_str!("../../handlers/sdk/src/pipeline.rs"),
    ),
    (
        "src/request.rs",
        include_str!("../../handlers/sdk/src/request.rs"),
    ),
    (
        "src/resample.rs",
        include_str!("../../handlers/sdk/src/resample.rs"),
    ),
    (
        "src/tensor.rs",
        include_str!("../../handlers/sdk/src/tensor.rs"),
    ),
    (
        "src/vision.rs",
        include_str!("../../handlers/sdk/src/vision.rs"),
    ),
];

/// The target a handler project builds for.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum Target {
    /// A component, which `wasmserve archive` takes as it is.
    #[default]
    #[value(name = "wasm32-wasip2")]
    Wasip2,
    /// A core module (the target once called `wasm32-wasi`), which `wasmserve archive`
    /// makes into a component with the WASI preview1 adapter.
    #[value(name = "wasm32-wasip1")]
    Wasip1,
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Target::Wasip2 => "wasm32-wasip2",
            Target::Wasip1 => "wasm32-wasip1",
        })
    }
}

/// What `wasmserve handler new` writes.
#[derive(Debug)]
pub struct NewHandler<'a> {
    /// The project's (and crate's) name.
    pub name: &'a str,
    /// The folder the project folder is made in.
    pub dir: &'a Path,
    /// The build target (default wasm32-wasip2).
    pub target: Target,
    /// Depend on this SDK checkout instead of vendoring the embedded one (for work on
    /// the SDK itself).
    pub sdk: Option<&'a Path>,
}

/// Writes the project `dir/name` and returns its path.
pub fn new_handler(opts: &NewHandler<'_>) -> anyhow::Result<PathBuf> {
    let name = opts.name;
    crate::archive::validate_model_name(name).map_err(anyhow::Error::msg)?;
    if name.contains('.') {
        bail!("handler name {name:?} may not contain '.' (it becomes a Rust crate name)");
    }
    let project = opts.dir.join(name);
    if project.exists() {
        bail!(
            "{} already exists; choose another name or --dir",
            project.display()
        );
    }
    let sdk = match opts.sdk {
        Some(path) => {
            let path = path.canonicalize().with_context(|| {
                format!(
                    "--sdk {}: no such folder (give the path of wasmserve's handlers/sdk)",
                    path.display()
                )
            })?;
            if !path.join("Cargo.toml").is_file() {
                bail!("--sdk {}: no Cargo.toml there", path.display());
            }
            path.display().to_string()
        }
        None => VENDORED_SDK.to_string(),
    };
    let crate_name = name.replace('-', "_");
    let target = opts.target.to_string();
    let fill = |t: &str| {
        t.replace("{{name}}", name)
            .replace("{{crate}}", &crate_name)
            .replace("{{sdk}}", &sdk)
            .replace("{{target}}", &target)
    };
    let write = |rel: &str, text: &str| -> anyhow::Result<()> {
        let path = project.join(rel);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("creating {}", parent.display()))?;
        }
        std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))
    };
    write("Cargo.toml", &fill(CARGO_TOML))?;
    write(".cargo/config.toml", &fill(CARGO_CONFIG))?;
    write("src/lib.rs", &fill(LIB_RS))?;
    write("README.md", &fill(README))?;
    write(".gitignore", "/target\n*.mar\n")?;
    if opts.sdk.is_none() {
        for (rel, text) in SDK_FILES {
            write(&format!("{VENDORED_SDK}/{rel}"), text)?;
        }
        for (file, text) in crate::sandbox::WIT_FILES {
            write(&format!("wit/{file}"), text)?;
        }
    }
    Ok(project)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every file of the SDK's `src/` is embedded: a new module would otherwise be
    /// missing from scaffolded projects, which would not build.
    #[test]
    fn every_sdk_source_is_embedded() {
        let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("../handlers/sdk/src");
        let mut on_disk: Vec<String> = std::fs::read_dir(&src)
            .unwrap()
            .map(|e| format!("src/{}", e.unwrap().file_name().to_string_lossy()))
            .collect();
        on_disk.sort();
        let mut embedded: Vec<String> = SDK_FILES
            .iter()
            .map(|(p, _)| p.to_string())
            .filter(|p| p.starts_with("src/"))
            .collect();
        embedded.sort();
        assert_eq!(embedded, on_disk);
    }

    /// The SDK's manifest stands alone: it is copied as it is into projects that are
    /// not in this workspace.
    #[test]
    fn the_sdk_manifest_inherits_nothing_from_the_workspace() {
        let (_, manifest) = SDK_FILES[0];
        assert!(
            !manifest.contains(".workspace") && !manifest.contains("workspace = true"),
            "handlers/sdk/Cargo.toml must not use workspace inheritance"
        );
    }

    #[test]
    fn the_vendored_sdk_finds_the_wit_beside_it() {
        // The SDK's bindings read `../../wit` from its own folder: in a scaffolded
        // project that is `<project>/wit`, where the WIT is written.
        let lib = SDK_FILES
            .iter()
            .find(|(p, _)| *p == "src/lib.rs")
            .unwrap()
            .1;
        assert!(lib.contains("path: \"../../wit\""));
        assert_eq!(Path::new(VENDORED_SDK).components().count(), 2);
    }
}
