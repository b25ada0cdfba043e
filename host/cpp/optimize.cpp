// What tch does not expose of libtorch's TorchScript optimizations, for
// `jitOptimize` in a model's model-config.yaml (host/src/model/optimize.rs):
// torch::jit::freeze (parameters and attributes inlined as constants, batch norm
// folded into the convolutions before it, dead code removed),
// torch::jit::optimize_for_inference (freezing, then the frozen-graph passes: oneDNN
// convolution fusions and layouts on the CPU, conv-add-relu fusions, ...), and the
// oneDNN Graph fuser (LLGA) for the forwards of the modules that ask for it.
//
// The oneDNN Graph fuser is a pass of TorchScript's profiling executor: once a
// forward has run on profiled inputs, the executor optimizes the graph for the shapes
// it saw, and the fuser's pass, where registered, turns runs of convolutions, batch
// norms, adds and activations into oneDNN partitions compiled for those shapes (their
// weights kept in oneDNN's own layout), guarded by a check of the inputs' shapes that
// falls back to the unfused graph. PyTorch registers it for the whole process
// (torch.jit.enable_onednn_fusion); here the pass is registered once, at start, and
// fuses only the graphs optimized on a thread that is inside wasmserve_fuse_begin/_end,
// so that a model that did not ask keeps its graph as it is.
//
// Built by host/build.rs against the same libtorch as torch-sys. A module is a
// torch::jit::Module* as tch's CModule holds it (torch_api.h: `module`).

#include <cstdlib>
#include <cstring>
#include <functional>
#include <torch/csrc/jit/codegen/onednn/interface.h>
#include <torch/csrc/jit/passes/pass_manager.h>
#include <torch/script.h>

namespace {

thread_local bool fuse_on_this_thread = false;

void fuse_where_asked(std::shared_ptr<torch::jit::Graph> &graph) {
  if (fuse_on_this_thread) {
    torch::jit::fuser::onednn::fuseGraph(graph);
  }
}

// Registered while the program starts, before any thread runs a forward: the executor
// reads the list of passes without a lock. It does nothing where no model asks.
const bool fuser_registered = (torch::jit::registerPrePass(fuse_where_asked), true);

} // namespace

extern "C" {

// A new module: `module` frozen (`level` 1 or 3) or frozen and optimized for inference
// (`level` 2), in eval mode; `module` itself is left as it was (level 3 is freezing,
// for the forwards to be run between wasmserve_fuse_begin and wasmserve_fuse_end). On
// failure, null, and *error is a malloc'ed message for wasmserve_free_error.
void *wasmserve_jit_optimize(void *module, int level, char **error) {
  *error = nullptr;
  try {
    auto *m = static_cast<torch::jit::Module *>(module);
    torch::jit::Module copy = m->clone();
    copy.eval();
    torch::jit::Module out = level == 2 ? torch::jit::optimize_for_inference(copy)
                                        : torch::jit::freeze(copy);
    return new torch::jit::Module(std::move(out));
  } catch (const std::exception &e) {
    *error = strdup(e.what());
  } catch (...) {
    *error = strdup("unknown C++ exception");
  }
  return nullptr;
}

// The forwards this thread runs from now until wasmserve_fuse_end have their graphs
// fused when the executor optimizes them.
void wasmserve_fuse_begin() { fuse_on_this_thread = true; }

void wasmserve_fuse_end() { fuse_on_this_thread = false; }

// 1 if the graph this thread's last forward ran (as the executor optimized it) holds
// a oneDNN fusion group, 0 if not, -1 if there is none: for the tests.
int wasmserve_last_graph_fused() {
  try {
    auto graph = torch::jit::lastExecutedOptimizedGraph();
    if (!graph) {
      return -1;
    }
    std::function<bool(torch::jit::Block *)> fused = [&](torch::jit::Block *block) {
      for (auto *node : block->nodes()) {
        if (node->kind() == torch::jit::prim::oneDNNFusionGroup) {
          return true;
        }
        for (auto *inner : node->blocks()) {
          if (fused(inner)) {
            return true;
          }
        }
      }
      return false;
    };
    return fused(graph->block()) ? 1 : 0;
  } catch (...) {
    return -1;
  }
}

void wasmserve_free_error(char *error) { free(error); }
}
