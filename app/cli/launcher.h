// Data-parallel jobs from the command line: `--gpus N` (or `--processes N` on the CPU) starts
// N copies of this command on this host, one per GPU, and supervises them; a copy started so,
// or by an outside launcher (torchrun's environment: RANK, WORLD_SIZE, LOCAL_RANK,
// MASTER_ADDR, MASTER_PORT), or with --rank/--world-size flags on several hosts, joins the job.
#pragma once
#include <functional>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "app/cli/cli_args.h"
#include "app/cli/cli_common.h"
#include "model/distributed/world.h"
#include "model/json.h"

namespace memmamba::cli {

// The options every data-parallel command takes, and `options` with them.
extern const std::set<std::string> kWorldOptions;
extern const char* const kWorldOptionsHelp;
std::set<std::string> with_world_options(std::set<std::string> options);

// What the command line and the environment ask of this process.
struct WorldRequest {
  int local_copies = 1;  // --gpus / --processes: copies to start on this host (1: none)
  bool cuda = false;     // --gpus: one GPU per copy
  std::optional<WorldOptions> join;  // this process is a rank of a job
};

// Reads --device, --gpus, --processes, --rank, --world-size, --local-rank, --master-addr,
// --master-port, --dist-timeout and the environment. UsageError on contradictions (a GPU count
// above the GPUs present among them). Call it before anything starts CUDA: a rank that an
// outside launcher started picks its GPU here.
WorldRequest world_request(const Args& args);

// Starts request.local_copies copies of `memmamba COMMAND <argv...>` on this host (rank i on
// GPU i with --gpus), with the torchrun environment, and waits for them. A copy that fails ends
// the job: the others are stopped (SIGTERM, SIGKILL 10 s later) and the failure named. Returns
// the exit code.
int run_local_copies(const WorldRequest& request, const std::string& command, const std::vector<std::string>& argv);

// Joins the job this process is a rank of (nullptr for a single process). Ranks other than 0
// log only warnings and errors.
std::shared_ptr<World> join_world(const WorldRequest& request, World::Backend backend);

// Rank 0 (or a single process) draws the progress bar; the other ranks only stop at Ctrl-C.
std::function<bool(int64_t, int64_t)> job_progress(const World* world, ProgressBar& bar);

// Every rank's device, as meta["devices"] on rank 0 (a single process records none).
void record_devices(World* world, bool cuda, Json& meta);

}  // namespace memmamba::cli
