// What tch does not expose of libtorch's TorchScript optimizations, for
// `jitOptimize` in a model's model-config.yaml (host/src/model/optimize.rs):
// torch::jit::freeze (parameters and attributes inlined as constants, batch norm
// folded into the convolutions before it, dead code removed) and
// torch::jit::optimize_for_inference (freezing, then the frozen-graph passes: oneDNN
// convolution fusions and layouts on the CPU, conv-add-relu fusions, ...).
//
// Built by host/build.rs against the same libtorch as torch-sys. A module is a
// torch::jit::Module* as tch's CModule holds it (torch_api.h: `module`).

#include <cstdlib>
#include <cstring>
#include <torch/script.h>

extern "C" {

// A new module: `module` frozen (`level` 1) or frozen and optimized for inference
// (`level` 2), in eval mode; `module` itself is left as it was. On failure, null, and
// *error is a malloc'ed message for wasmserve_free_error.
void *wasmserve_jit_optimize(void *module, int level, char **error) {
  *error = nullptr;
  try {
    auto *m = static_cast<torch::jit::Module *>(module);
    torch::jit::Module copy = m->clone();
    copy.eval();
    torch::jit::Module out = level >= 2 ? torch::jit::optimize_for_inference(copy)
                                        : torch::jit::freeze(copy);
    return new torch::jit::Module(std::move(out));
  } catch (const std::exception &e) {
    *error = strdup(e.what());
  } catch (...) {
    *error = strdup("unknown C++ exception");
  }
  return nullptr;
}

void wasmserve_free_error(char *error) { free(error); }
}
