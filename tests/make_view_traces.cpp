// Writes the small traces the view tests draw (the views link no torch, so they read traces
// from files): run as a CTest fixture before test_views. Usage: make_view_traces DIR
#include <cstdio>
#include <filesystem>
#include <string>
#include <vector>

#include "model/eval/fidelity.h"
#include "model/memmamba.h"
#include "model/runner.h"
#include "model/runtime.h"
#include "tests/test_helpers.h"

using namespace memmamba;

namespace {

// `tokens` tokens of words "w0 " ... "w<words-1> " with ids from a fixed pattern.
TraceRunRequest words(const ModelConfig& c, int64_t tokens, int64_t words, int64_t stride) {
  TraceRunRequest req;
  for (int64_t t = 0; t < tokens; ++t) {
    req.char_begin.push_back(static_cast<int64_t>(req.text.size()));
    req.text += "w" + std::to_string(t % words) + " ";
    req.char_end.push_back(static_cast<int64_t>(req.text.size()));
    req.tokens.push_back(static_cast<int32_t>((t * 13 + t / stride) % c.vocab_size));
  }
  return req;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: make_view_traces DIR\n");
    return 2;
  }
  configure_cpu_runtime();
  const std::filesystem::path dir = argv[1];
  std::filesystem::create_directories(dir);
  try {
    // The suite's trace: 300 tokens, windows of one token, a retention curve from token 10.
    const ModelConfig tiny = testing::tiny_config();
    const MemMambaModel model = MemMambaModel::random(tiny, 3);
    TraceRunRequest main_run = words(tiny, 300, 37, 7);
    main_run.options = model.default_options();
    main_run.options.retention_sources = {10};
    Trace trace = trace_tokens(model, std::move(main_run));
    trace.save((dir / "main.trace").string());
    // The same with memory fidelity measured on its first 64 tokens.
    eval::FidelityOptions fidelity;
    fidelity.run = model.default_options();
    trace.run_info["fidelity"] =
        eval::memory_fidelity(model, std::vector<int32_t>(trace.tokens.begin(), trace.tokens.begin() + 64), fidelity);
    trace.save((dir / "fidelity.trace").string());
    // Windows of three tokens: I_state and I_t differ.
    ModelConfig windows = tiny;
    windows.note_window = 3;
    const MemMambaModel windows_model = MemMambaModel::random(windows, 3);
    TraceRunRequest windows_run;
    for (int64_t t = 0; t < 90; ++t) windows_run.tokens.push_back(static_cast<int32_t>((t * 13 + t / 7) % windows.vocab_size));
    windows_run.options = windows_model.default_options();
    trace_tokens(windows_model, std::move(windows_run)).save((dir / "window3.trace").string());
    // tau2 below every I_state: the read runs at every token.
    ModelConfig everywhere = tiny;
    everywhere.tau_retrieve = -1;
    const MemMambaModel everywhere_model = MemMambaModel::random(everywhere, 3);
    TraceRunRequest everywhere_run = words(everywhere, 200, 23, 5);
    everywhere_run.options = everywhere_model.default_options();
    trace_tokens(everywhere_model, std::move(everywhere_run)).save((dir / "reads-everywhere.trace").string());
    // DeciMamba: a Mamba-only model dropping tokens at layers 1 and 2.
    ModelConfig mamba = tiny;
    mamba.memory = false;
    const MemMambaModel mamba_model = MemMambaModel::random(mamba, 3);
    TraceRunRequest decimated_run = words(mamba, 300, 37, 7);
    decimated_run.options = mamba_model.default_options();
    decimated_run.options.decimation.layers = {1, 2};
    decimated_run.options.decimation.base_length = 80;
    decimated_run.options.decimation.min_length = 10;
    trace_tokens(mamba_model, std::move(decimated_run)).save((dir / "decimated.trace").string());
  } catch (const std::exception& e) {
    std::fprintf(stderr, "make_view_traces: %s\n", e.what());
    return 1;
  }
  return 0;
}
