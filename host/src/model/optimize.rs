//! `jitOptimize` (a model's `model-config.yaml`): TorchScript's own optimizations at
//! load, which tch does not expose, through `host/cpp/optimize.cpp`.
//!
//! | `jitOptimize` | what libtorch does to the loaded module |
//! |---|---|
//! | `off` (default) | nothing: the module as saved |
//! | `freeze` | `torch::jit::freeze`: parameters and attributes become constants, batch norms fold into the convolutions before them, dead code goes |
//! | `inference` | `torch::jit::optimize_for_inference`: freezing, then the frozen-graph passes (on the CPU oneDNN's convolution layouts and fusions; conv-add-relu fusions) |
//! | `fuse` | freezing, then the oneDNN Graph fuser on the CPU: once a forward has run, TorchScript's profiling executor optimizes the graph for the input shapes it saw and the fuser compiles its runs of convolutions, batch norms, adds and activations into oneDNN partitions for those shapes (weights kept in oneDNN's layout); inputs of other shapes take the unfused graph until they are profiled in turn. On a GPU, `freeze` |
//!
//! `fuse` is what PyTorch's `torch.jit.enable_onednn_fusion(True)` does, but for the
//! model that asks alone: PyTorch turns the fuser on for every graph of the process;
//! here its pass fuses only graphs optimized inside [`with_fuser`], so
//! other models keep their graphs as they are. A fused forward's first two calls for a
//! new input shape are slow (profiled, then compiled).
//!
//! The module stays the user's: the same graph, its numerics within float rounding
//! (the tests hold fp32 outputs to 1e-4 of the plain forward). A module these passes
//! cannot take fails to load with libtorch's reason, and `off` serves it as it is.

use std::ffi::{CStr, c_char, c_int, c_void};

/// How a model's TorchScript module is optimized at load.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum JitOptimize {
    #[default]
    Off,
    Freeze,
    Inference,
    Fuse,
}

impl JitOptimize {
    /// From the yaml's value: `off` (or `false`), `freeze`, `inference` (or `true`),
    /// `fuse`.
    pub fn parse(value: &str) -> Result<JitOptimize, String> {
        match value {
            "off" | "false" => Ok(JitOptimize::Off),
            "freeze" => Ok(JitOptimize::Freeze),
            "inference" | "true" => Ok(JitOptimize::Inference),
            "fuse" => Ok(JitOptimize::Fuse),
            other => Err(format!(
                "`{other}`; it must be off, freeze, inference or fuse"
            )),
        }
    }

    /// What it comes to on `device`: the oneDNN fuser is the CPU's, so `fuse` is
    /// `freeze` elsewhere.
    pub fn on(self, device: tch::Device) -> JitOptimize {
        match (self, device) {
            (JitOptimize::Fuse, tch::Device::Cpu) => JitOptimize::Fuse,
            (JitOptimize::Fuse, _) => JitOptimize::Freeze,
            (other, _) => other,
        }
    }
}

unsafe extern "C" {
    fn wasmserve_jit_optimize(
        module: *mut c_void,
        level: c_int,
        error: *mut *mut c_char,
    ) -> *mut c_void;
    fn wasmserve_free_error(error: *mut c_char);
    fn wasmserve_fuse_begin();
    fn wasmserve_fuse_end();
    fn wasmserve_last_graph_fused() -> c_int;
}

/// Runs `f` (a forward) with the fuser on for this thread (`fuse`): the fuser's pass
/// fuses the graphs that the profiling executor optimizes on this thread meanwhile.
pub fn with_fuser<T>(f: impl FnOnce() -> T) -> T {
    /// Turns the flag off again, also when `f` unwinds.
    struct Scope;
    impl Drop for Scope {
        fn drop(&mut self) {
            // SAFETY: clears a thread-local flag of the shim; no other state.
            unsafe { wasmserve_fuse_end() };
        }
    }
    // SAFETY: sets a thread-local flag of the shim; no other state.
    unsafe { wasmserve_fuse_begin() };
    let _scope = Scope;
    f()
}

/// Runs `f` (a forward) as a model with `fuse` runs it: inside [`with_fuser`] when
/// `fuse`, as it is otherwise.
pub fn run_forward<T>(fuse: bool, f: impl FnOnce() -> T) -> T {
    if fuse { with_fuser(f) } else { f() }
}

/// Whether the graph of this thread's last forward, as the executor ran it, holds a
/// oneDNN fusion group (`None` when this thread has run none).
pub fn last_forward_fused() -> Option<bool> {
    // SAFETY: reads this thread's last executed graph; no arguments.
    match unsafe { wasmserve_last_graph_fused() } {
        1 => Some(true),
        0 => Some(false),
        _ => None,
    }
}

// tch's CModule is its one field, the `torch::jit::Module*` of tch's C API
// (`atm_load` allocates it with `new`, its Drop `delete`s it): what the shim takes and
// gives. Checked here, and by the tests' round trip.
const _: () = assert!(std::mem::size_of::<tch::CModule>() == std::mem::size_of::<*mut c_void>());

/// `module` optimized as `how` says (itself for `Off`).
pub fn apply(module: tch::CModule, how: JitOptimize) -> Result<tch::CModule, String> {
    let level = match how {
        JitOptimize::Off => return Ok(module),
        JitOptimize::Freeze => 1,
        JitOptimize::Inference => 2,
        JitOptimize::Fuse => 3,
    };
    // SAFETY: see the size check above: a CModule is the module pointer, which stays
    // owned by exactly one CModule at a time (rebuilt below to be dropped).
    let raw = unsafe { std::mem::transmute::<tch::CModule, *mut c_void>(module) };
    let mut error: *mut c_char = std::ptr::null_mut();
    // SAFETY: `raw` is a live torch::jit::Module*; the shim only reads it.
    let out = unsafe { wasmserve_jit_optimize(raw, level, &mut error) };
    // SAFETY: `raw` came from a CModule above and is not used after this.
    drop(unsafe { std::mem::transmute::<*mut c_void, tch::CModule>(raw) });
    if out.is_null() {
        let message = if error.is_null() {
            "libtorch gave no reason".to_string()
        } else {
            // SAFETY: the shim's error is a NUL-terminated string it malloc'ed.
            let text = unsafe { CStr::from_ptr(error) }
                .to_string_lossy()
                .into_owned();
            unsafe { wasmserve_free_error(error) };
            text
        };
        return Err(message);
    }
    // SAFETY: `out` is a new torch::jit::Module* (`new` in the shim), now owned here.
    Ok(unsafe { std::mem::transmute::<*mut c_void, tch::CModule>(out) })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_yaml_values() {
        assert_eq!(JitOptimize::parse("off"), Ok(JitOptimize::Off));
        assert_eq!(JitOptimize::parse("freeze"), Ok(JitOptimize::Freeze));
        assert_eq!(JitOptimize::parse("true"), Ok(JitOptimize::Inference));
        assert!(JitOptimize::parse("fast").is_err());
    }

    /// A small conv → batch norm → relu network, traced and saved in `dir`: its file,
    /// an input, and the plain module's output for it.
    fn traced_net(dir: &std::path::Path) -> (std::path::PathBuf, tch::Tensor, tch::Tensor) {
        use tch::nn;
        tch::manual_seed(1);
        let mut vs = nn::VarStore::new(tch::Device::Cpu);
        let conv = nn::conv2d(vs.root() / "c", 3, 8, 3, Default::default());
        let bn = nn::batch_norm2d(vs.root() / "bn", 8, Default::default());
        vs.freeze();
        let x = tch::Tensor::randn([2, 3, 16, 16], (tch::Kind::Float, tch::Device::Cpu));
        let mut f = |xs: &[tch::Tensor]| vec![xs[0].apply(&conv).apply_t(&bn, false).relu()];
        let traced =
            tch::CModule::create_by_tracing("Net", "forward", &[x.shallow_clone()], &mut f)
                .unwrap();
        let path = dir.join("net.pt");
        traced.save(&path).unwrap();
        let plain = tch::CModule::load(&path).unwrap();
        let want = plain.forward_ts(&[&x]).unwrap();
        (path, x, want)
    }

    /// Frozen and optimized, the network answers as the plain module does.
    #[test]
    fn optimized_modules_answer_as_the_plain_one() {
        let dir = tempfile::tempdir().unwrap();
        let (path, x, want) = traced_net(dir.path());
        for how in [
            JitOptimize::Freeze,
            JitOptimize::Inference,
            JitOptimize::Fuse,
        ] {
            let m = apply(tch::CModule::load(&path).unwrap(), how).unwrap();
            // As `Model::forward` runs it: the fuser on for `fuse` alone (its pass is
            // registered for all, and must leave the others' graphs alone).
            let forward = || tch::no_grad(|| m.forward_ts(&[&x]));
            // The third call runs the graph the executor optimized after profiling.
            for _ in 0..3 {
                let got = run_forward(how == JitOptimize::Fuse, forward).unwrap();
                let diff = (got - &want).abs().max().double_value(&[]);
                assert!(diff < 1e-4, "{how:?}: {diff}");
            }
            assert_eq!(
                last_forward_fused(),
                Some(how == JitOptimize::Fuse),
                "{how:?}"
            );
        }
    }

    /// Two lanes at once, one forward of a fused module on one thread and one of a frozen
    /// module on the other, in step so that their graphs are optimized at the same time:
    /// the fuser's switch is the thread's, so the first thread's graph is fused and the
    /// second's is not, and both answer as the plain module.
    #[test]
    fn the_fuser_fuses_only_the_thread_that_asks() {
        let dir = tempfile::tempdir().unwrap();
        let (path, x, want) = traced_net(dir.path());
        let step = std::sync::Barrier::new(2);
        std::thread::scope(|s| {
            for how in [JitOptimize::Fuse, JitOptimize::Freeze] {
                let (path, step) = (&path, &step);
                let (x, want) = (x.shallow_clone(), want.shallow_clone());
                s.spawn(move || {
                    let m = apply(tch::CModule::load(path).unwrap(), how).unwrap();
                    let forward = || tch::no_grad(|| m.forward_ts(&[&x])).unwrap();
                    for _ in 0..4 {
                        step.wait();
                        let got = run_forward(how == JitOptimize::Fuse, forward);
                        let diff = (got - &want).abs().max().double_value(&[]);
                        assert!(diff < 1e-4, "{how:?}: {diff}");
                    }
                    assert_eq!(
                        last_forward_fused(),
                        Some(how == JitOptimize::Fuse),
                        "{how:?}"
                    );
                });
            }
        });
    }
}
