//! Sets an rpath to libtorch (as host/build.rs does for the server's own binaries: a
//! dependency's `rustc-link-arg` does not reach this crate's binaries), so that the fuzz
//! targets run without `LD_LIBRARY_PATH`. `LIBTORCH` comes from the workspace's
//! `.cargo/config.toml` (`.libtorch`, relative to the repository root) or the
//! environment.

use std::path::PathBuf;

fn main() {
    println!("cargo:rerun-if-env-changed=LIBTORCH");
    let Ok(libtorch) = std::env::var("LIBTORCH") else {
        println!("cargo:warning=LIBTORCH is not set; the fuzz targets will need LD_LIBRARY_PATH");
        return;
    };
    let manifest_dir = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").unwrap());
    let path = manifest_dir.parent().unwrap().join(&libtorch);
    let lib = path.canonicalize().unwrap_or(path).join("lib");
    println!("cargo:rustc-link-arg=-Wl,-rpath,{}", lib.display());
}
