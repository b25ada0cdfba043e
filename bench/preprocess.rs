//! The built-in `image_classifier`'s preprocess of kitten.jpg inside the sandbox (a
//! fresh wasmtime instance, the same limits as the server) next to the same Rust code
//! run natively, median of 100 each after warm-up, in one run; and the size of every
//! built-in component.
//!
//! `cargo bench --bench preprocess`

#[path = "../tests/common/mod.rs"]
mod common;

use std::time::Duration;

use wasmserve::runtime::{Context, HandlerRuntime, Limits, Part, Request, Sandbox};

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
    let runtime = HandlerRuntime::new(Limits::default(), None).unwrap();
    let component = runtime
        .compile(wasmserve::builtin::component("image_classifier").unwrap())
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let context = Context {
        model_name: "bench".into(),
        model_version: "1.0".into(),
        manifest: "{}".into(),
        config: "{}".into(),
        batch_size: 1,
        device: "cpu".into(),
    };
    let sandbox = Sandbox::new(dir.path().to_path_buf(), context);
    let instantiate = median(100, || {
        std::hint::black_box(component.instantiate(&sandbox).unwrap());
    });
    let mut instance = component.instantiate(&sandbox).unwrap();
    let request = Request {
        id: "bench".into(),
        headers: vec![],
        parts: vec![Part {
            name: "body".into(),
            content_type: None,
            data: kitten.clone(),
        }],
    };
    let sandboxed = median(100, || {
        std::hint::black_box(instance.preprocess(&request).unwrap().unwrap());
    });
    let native = median(100, || {
        std::hint::black_box(wasmserve_handler::vision::imagenet_transform(&kitten).unwrap());
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
    println!("| the same Rust code, native | {:.2} |", ms(native));
    println!(
        "| ratio sandboxed / native | {:.2} |",
        ms(sandboxed) / ms(native)
    );
    println!(
        "| a fresh instance (instantiate + init) | {:.3} |",
        ms(instantiate)
    );
}
