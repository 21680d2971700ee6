// What every `memmamba` subcommand shares: exit codes, Ctrl-C, the model flags and their
// help, the progress bar. Each command group lives in its own file (commands_*.cpp).
#pragma once
#include <atomic>
#include <chrono>
#include <cstdint>
#include <initializer_list>
#include <set>
#include <string>
#include <vector>

#include "app/cli/cli_args.h"
#include "model/session.h"

namespace memmamba::cli {

enum ExitCode { kOk = 0, kFailure = 1, kUsage = 2, kBadInput = 3, kInterrupted = 130 };

// Set by SIGINT; long commands stop at their next progress report.
extern std::atomic<bool> g_interrupted;

extern const char* const kModelOptionsHelp;
extern const char* const kEditHelp;
extern const std::set<std::string> kModelOptions;

std::set<std::string> with(std::set<std::string> base, std::initializer_list<std::string> more);

// The model flags as the session takes them. Each parses every numeric or named flag once,
// so a bad value is a usage error (exit 2) before any file is read.
void check_model_flags(const Args& args);
ModelChoice model_choice(const Args& args);
MemoryOverrides memory_overrides(const Args& args);
LoadedModel load_model(const Args& args);
Tokenizer load_tokenizer(const Args& args, const ModelConfig& config);
RunOptions run_options(const Args& args, const MemMambaModel& model);
// --decimate and --decimate-*: DeciMamba's settings over its defaults for the model (none given:
// no decimation). A model with memory needs --no-memory.
DecimationSettings decimation_settings(const Args& args, const ModelConfig& config);

class ProgressBar {
 public:
  explicit ProgressBar(std::string label, std::string unit = "tokens");
  // Redraws in place on a terminal; elsewhere (logs, pipes) prints a line at most every 2 s.
  // Returns false once Ctrl-C was pressed.
  bool update(int64_t done, int64_t total);

 private:
  using clock = std::chrono::steady_clock;
  std::string label_, unit_;
  bool tty_;
  bool printed_ = false;
  clock::time_point start_, last_;
};

// The commands, by group.
int cmd_info(const std::vector<std::string>& argv);
int cmd_run(const std::vector<std::string>& argv);
int cmd_generate(const std::vector<std::string>& argv);
int cmd_bench(const std::vector<std::string>& argv);
int cmd_eval(const std::vector<std::string>& argv);
int cmd_tokenizer_train(const std::vector<std::string>& argv);
int cmd_data(const std::vector<std::string>& argv);
int cmd_train(const std::vector<std::string>& argv);
int cmd_convert(const std::vector<std::string>& argv);
int cmd_init(const std::vector<std::string>& argv);

}  // namespace memmamba::cli
