// memmamba: the command-line front end of the model library. This file holds the command
// table and the map from errors to exit codes; the commands are in commands_*.cpp.
#include <csignal>
#include <map>
#include <cstdio>
#include <string>
#include <vector>

#include "app/cli/cli_common.h"
#include "model/book/book.h"
#include "model/file_io.h"
#include "model/log.h"
#include "model/memmamba.h"
#include "model/runtime.h"
#include "model/safetensors.h"
#include "model/text_input.h"
#include "model/tokenizer.h"

using namespace memmamba;
using namespace memmamba::cli;

namespace {

void on_sigint(int) { g_interrupted = true; }

const char* kMainHelp = R"(memmamba: run, trace and measure MemMamba models

usage: memmamba <command> [options]      (memmamba <command> --help for details)

commands:
  info             summarise a checkpoint or a trace file
  run              trace a text file and write the trace
  generate         greedy generation in step mode after a prompt
  bench            tokens/s over sequence lengths (parallel traced, step)
  tokenizer-train  train a SentencePiece tokenizer on text files
  data             tokenize books into training shards (train / held-out split by book)
  train            train a model on shards (AdamW, warm-up + cosine, checkpoints, resume)
  convert          rewrite a checkpoint in another storage type (f32, bf16, f16)
  init             write a checkpoint of untrained random weights for a config
  eval passkey     passkey retrieval over a grid of lengths x depths
  eval ppl         perplexity by context length on a book
  eval fidelity    ETMF (and ETMF_delta) and ECLMF on a book
  eval docs        noisy multi-document retrieval (book paragraphs)

exit codes: 0 success, 1 failure while running, 2 bad command line,
            3 bad input file (text, checkpoint, tokenizer, trace), 130 interrupted
)";

}  // namespace

int main(int argc, char** argv) {
  restart_with_fitting_blas_kernels(argv);
  std::signal(SIGINT, on_sigint);
  log::use_plain_console_format();
  configure_cpu_runtime();
  std::vector<std::string> rest(argv + std::min(argc, 2), argv + argc);
  const std::string cmd = argc >= 2 ? argv[1] : "";
  try {
    using Command = int (*)(const std::vector<std::string>&);
    static const std::map<std::string, Command> commands = {
        {"info", cmd_info},   {"run", cmd_run},     {"generate", cmd_generate}, {"bench", cmd_bench},
        {"eval", cmd_eval},   {"train", cmd_train}, {"data", cmd_data},         {"tokenizer-train", cmd_tokenizer_train},
        {"convert", cmd_convert}, {"init", cmd_init}};
    if (const auto it = commands.find(cmd); it != commands.end()) return it->second(rest);
    if (cmd == "--help" || cmd == "-h" || cmd == "help") {
      std::printf("%s", kMainHelp);
      return kOk;
    }
    std::fprintf(stderr, "%s", kMainHelp);
    if (!cmd.empty()) std::fprintf(stderr, "\nerror: unknown command \"%s\"\n", cmd.c_str());
    return kUsage;
  } catch (const UsageError& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return kUsage;
  } catch (const ChoiceError& e) {  // a device, file or setting the user chose that cannot be had
    std::fprintf(stderr, "error: %s\n", e.what());
    return kUsage;
  } catch (const Cancelled&) {
    std::fprintf(stderr, "\ninterrupted: nothing was written\n");
    return kInterrupted;
  } catch (const FormatError& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return kBadInput;
  } catch (const TextError& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return kBadInput;
  } catch (const EditError& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return kBadInput;
  } catch (const TokenizerError& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return kBadInput;
  } catch (const FileError& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return kBadInput;
  } catch (const std::invalid_argument& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return kBadInput;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return kFailure;
  }
}
