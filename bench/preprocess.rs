//! The built-in `image_classifier`'s preprocess of kitten.jpg inside the sandbox (a
//! fresh wasmtime instance, the same limits as the server) next to the same Rust code
//! run natively, median of 100 each after warm-up, in one run; and the size of every
//! built-in component.
//!
//! `cargo bench --bench preprocess`

#[path = "../tests/common/mod.rs"]
mod common;

use std::time::Duration;

fn median(n: usize, f: impl FnMut()) -> Duration {
    common::median_time(10, n, f)
}

fn main() {
    println!("| built-in handler | component size |");
    println!("|---|---:|");
    for name in wasmserve::builtin::names() {
        let bytes = wasmserve::builtin::component(name).unwrap();
        println!("| {name} | {} KiB |", bytes.len() / 1024);
    }

    let kitten = std::fs::read(common::asset("images/kitten.jpg")).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (_runtime, component, sandbox) = common::builtin_sandbox("image_classifier", dir.path());
    let instantiate = median(100, || {
        std::hint::black_box(component.instantiate(&sandbox).unwrap());
    });
    let mut instance = component.instantiate(&sandbox).unwrap();
    let request = common::body_request(kitten.clone());
    let sandboxed = median(100, || {
        std::hint::black_box(instance.preprocess(&request, None).unwrap().unwrap());
    });
    let native = median(100, || {
        std::hint::black_box(
            wasmserve::imaging::imagenet_transform(&kitten, wasmserve::imaging::Mode::Exact)
                .unwrap(),
        );
    });
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    println!();
    println!("kitten.jpg (720x720) → [1, 3, 224, 224], median of 100");
    println!("| what | ms |");
    println!("|---|---:|");
    println!(
        "| preprocess in the sandbox (wasm32-wasip2, simd128) | {:.2} |",
        ms(sandboxed)
    );
    println!(
        "| the same transform by the host natively (imaging) | {:.2} |",
        ms(native)
    );
    println!(
        "| ratio sandboxed / native | {:.2} |",
        ms(sandboxed) / ms(native)
    );
    println!(
        "| a fresh instance (instantiate + init) | {:.3} |",
        ms(instantiate)
    );
}
