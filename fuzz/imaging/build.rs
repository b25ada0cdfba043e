//! Compiles host/cpp/jpeg.c (the JPEG decoder's C side) as host/build.rs does, against
//! the headers of the libjpeg-turbo that mozjpeg-sys builds. With `CC=clang` and
//! `CFLAGS=-fsanitize=fuzzer-no-link,address` (fuzz/README.md) the C code, libjpeg-turbo
//! included, is instrumented too, so that libFuzzer's coverage reaches into it.

fn main() {
    let source = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../host/cpp/jpeg.c");
    println!("cargo:rerun-if-changed={}", source.display());
    let mut build = cc::Build::new();
    build.pic(true).file(&source);
    if let Some(dirs) = std::env::var_os("DEP_JPEG_INCLUDE") {
        for dir in std::env::split_paths(&dirs) {
            build.include(dir);
        }
    }
    build.compile("wasmserve_jpeg");
}
