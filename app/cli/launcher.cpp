#include "app/cli/launcher.h"

#include <arpa/inet.h>
#include <sched.h>
#include <sys/prctl.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <sstream>
#include <thread>

#include "app/cli/cli_common.h"
#include "model/log.h"
#include "model/runtime.h"

namespace memmamba::cli {

const std::set<std::string> kWorldOptions = {"gpus",       "processes",   "rank",        "world-size",
                                             "local-rank", "master-addr", "master-port", "dist-timeout"};

const char* const kWorldOptionsHelp =
    "data parallel (several GPUs or processes; see docs/distributed.md):\n"
    "  --gpus N              start N copies of this command on this host, one per GPU (with --device cuda)\n"
    "  --processes N         the same on the CPU (gloo), N processes\n"
    "  --rank R --world-size N [--local-rank L] [--master-addr HOST] [--master-port 29500]\n"
    "                        join a job started by hand on several hosts (or set RANK, WORLD_SIZE,\n"
    "                        LOCAL_RANK, MASTER_ADDR, MASTER_PORT, as torchrun does)\n"
    "  --dist-timeout S      a rank that does not answer within S seconds ends the job (default 600)\n";

std::set<std::string> with_world_options(std::set<std::string> options) {
  options.insert(kWorldOptions.begin(), kWorldOptions.end());
  return options;
}

namespace {

// The visible GPUs' names as CUDA_VISIBLE_DEVICES lists them ("0", "1", ... when unset).
std::vector<std::string> visible_gpus(int at_least) {
  std::vector<std::string> out;
  if (const char* list = std::getenv("CUDA_VISIBLE_DEVICES"); list && *list) {
    std::stringstream in(list);
    for (std::string item; std::getline(in, item, ',');)
      if (!item.empty()) out.push_back(item);
    return out;
  }
  for (int i = 0; i < at_least; ++i) out.push_back(std::to_string(i));
  return out;
}

int free_local_port() {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) throw std::runtime_error(std::string("cannot open a socket: ") + std::strerror(errno));
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  address.sin_port = 0;
  socklen_t size = sizeof address;
  if (::bind(fd, reinterpret_cast<sockaddr*>(&address), sizeof address) != 0 ||
      ::getsockname(fd, reinterpret_cast<sockaddr*>(&address), &size) != 0) {
    ::close(fd);
    throw std::runtime_error(std::string("cannot find a free port: ") + std::strerror(errno));
  }
  ::close(fd);
  return ntohs(address.sin_port);
}

// Set when the launcher itself is asked to end (a scheduler's SIGTERM): the ranks go too.
volatile std::sig_atomic_t g_terminate = 0;
void on_terminate(int) { g_terminate = 1; }

std::string describe(int status) {
  if (WIFEXITED(status)) return "exited with code " + std::to_string(WEXITSTATUS(status));
  if (WIFSIGNALED(status)) return std::string("was killed by signal ") + ::strsignal(WTERMSIG(status));
  return "stopped";
}

}  // namespace

WorldRequest world_request(const Args& args) {
  WorldRequest request;
  const bool device_is_cuda = args.get("device", "cpu") == "cuda";
  if (args.has("gpus") && args.has("processes")) throw UsageError("give --gpus or --processes, not both");
  const int gpus = static_cast<int>(args.get_int("gpus", 1, 1, 4096));
  const int processes = static_cast<int>(args.get_int("processes", 1, 1, 4096));
  if (args.has("gpus") && !device_is_cuda)
    throw UsageError("--gpus runs one copy per GPU: add --device cuda (or --processes N for the CPU)");
  if (args.has("processes") && device_is_cuda) throw UsageError("--processes is for the CPU: on GPUs use --gpus N");
  const int copies = args.has("gpus") ? gpus : processes;
  request.cuda = device_is_cuda;
  WorldOptions options;
  options.timeout = std::chrono::seconds(args.get_int("dist-timeout", 600, 10, 7 * 24 * 3600));
  bool joined = false;
  try {
    joined = world_from_environment(options);
  } catch (const DistributedError& e) {
    throw UsageError(e.what());  // a bad environment is a bad command line
  }
  if (args.has("rank") || args.has("world-size")) {
    if (!args.has("rank") || !args.has("world-size")) throw UsageError("--rank and --world-size go together");
    options.size = static_cast<int>(args.get_int("world-size", 1, 1, 1 << 16));
    options.rank = static_cast<int>(args.get_int("rank", 0, 0, options.size - 1));
    options.local_rank = options.rank;
    joined = true;
  }
  if (joined) {
    options.local_rank = static_cast<int>(args.get_int("local-rank", options.local_rank, 0, 4096));
    options.master_addr = args.get("master-addr", options.master_addr);
    options.master_port = static_cast<int>(args.get_int("master-port", options.master_port, 1, 65535));
    if ((args.has("gpus") || args.has("processes")) && std::getenv("MEMMAMBA_LAUNCHED") && copies != options.size)
      throw UsageError("this copy was started for a world of " + std::to_string(options.size) + ", not " + std::to_string(copies));
    // One GPU per rank: what an outside launcher did not narrow, narrow here, before CUDA starts.
    if (device_is_cuda && !std::getenv("MEMMAMBA_LAUNCHED")) {
      const std::vector<std::string> visible = visible_gpus(options.local_rank + 1);
      if (options.local_rank >= static_cast<int>(visible.size()))
        throw UsageError("local rank " + std::to_string(options.local_rank) + " has no GPU: " +
                         std::to_string(visible.size()) + " are visible");
      ::setenv("CUDA_VISIBLE_DEVICES", visible[static_cast<size_t>(options.local_rank)].c_str(), 1);
    }
    if (options.size > 1) request.join = options;
    return request;
  }
  if (copies > 1 && device_is_cuda) {
    const int present = cuda_device_count();
    if (copies > present)
      throw UsageError("--gpus " + std::to_string(copies) + ": this machine has " + std::to_string(present) +
                       (present == 1 ? " GPU" : " GPUs"));
  }
  request.local_copies = copies;
  return request;
}

int run_local_copies(const WorldRequest& request, const std::string& command, const std::vector<std::string>& argv) {
  const int copies = request.local_copies;
  const bool cuda = request.cuda;
  std::error_code ec;
  const std::string exe = std::filesystem::read_symlink("/proc/self/exe", ec).string();
  if (ec) throw std::runtime_error("cannot find this program to start its copies: " + ec.message());
  const std::string port = std::to_string(free_local_port());
  const std::vector<std::string> gpus = visible_gpus(copies);
  std::vector<std::string> args{exe, command};
  args.insert(args.end(), argv.begin(), argv.end());
  std::vector<char*> raw;
  for (std::string& a : args) raw.push_back(a.data());
  raw.push_back(nullptr);
  std::fflush(nullptr);
  cpu_set_t mask;
  const int cores = ::sched_getaffinity(0, sizeof mask, &mask) == 0 ? CPU_COUNT(&mask) : 1;
  std::vector<pid_t> pids(static_cast<size_t>(copies), -1);
  const pid_t launcher = ::getpid();
  std::signal(SIGTERM, on_terminate);
  std::signal(SIGHUP, on_terminate);
  auto stop_all = [&](int signal) {
    for (pid_t pid : pids)
      if (pid > 0) ::kill(pid, signal);
  };
  for (int rank = 0; rank < copies; ++rank) {
    const pid_t pid = ::fork();
    if (pid < 0) {
      stop_all(SIGKILL);
      throw std::runtime_error(std::string("cannot start rank ") + std::to_string(rank) + ": " + std::strerror(errno));
    }
    if (pid == 0) {
      // A launcher that dies (even by SIGKILL) takes its ranks with it.
      ::prctl(PR_SET_PDEATHSIG, SIGTERM);
      if (::getppid() != launcher) ::_exit(kFailure);
      ::setenv("RANK", std::to_string(rank).c_str(), 1);
      ::setenv("LOCAL_RANK", std::to_string(rank).c_str(), 1);
      ::setenv("WORLD_SIZE", std::to_string(copies).c_str(), 1);
      ::setenv("MASTER_ADDR", "127.0.0.1", 1);
      ::setenv("MASTER_PORT", port.c_str(), 1);
      ::setenv("MEMMAMBA_LAUNCHED", "1", 1);
      if (cuda) ::setenv("CUDA_VISIBLE_DEVICES", gpus[static_cast<size_t>(rank)].c_str(), 1);
      // The host's cores shared among the copies (configure_cpu_runtime reads it).
      ::setenv("MEMMAMBA_THREADS", std::to_string(std::max(1, cores / copies)).c_str(), 0);
      ::execv(exe.c_str(), raw.data());
      std::fprintf(stderr, "error: cannot start %s: %s\n", exe.c_str(), std::strerror(errno));
      ::_exit(127);
    }
    pids[static_cast<size_t>(rank)] = pid;
  }
  log::info("started " + std::to_string(copies) + (cuda ? " ranks, one per GPU" : " ranks on the CPU") +
            " (store on 127.0.0.1:" + port + ")");
  int running = copies, result = kOk;
  bool stopping = false, forwarded_interrupt = false;
  int stop_round = 0;  // 0: none sent yet, 1: SIGTERM sent, then SIGKILL
  auto stop_deadline = std::chrono::steady_clock::time_point::max();
  while (running > 0) {
    int status = 0;
    const pid_t pid = ::waitpid(-1, &status, WNOHANG);
    if (pid > 0) {
      size_t rank = 0;
      while (rank < pids.size() && pids[rank] != pid) ++rank;
      if (rank == pids.size()) continue;
      pids[rank] = -1;
      --running;
      const bool ok = WIFEXITED(status) && WEXITSTATUS(status) == 0;
      if (!ok && !stopping) {
        const bool interrupted = WIFEXITED(status) && WEXITSTATUS(status) == kInterrupted;
        const int code = WIFEXITED(status) ? WEXITSTATUS(status) : kFailure;
        result = code == kUsage || code == kBadInput || code == kInterrupted ? code : kFailure;
        stopping = true;
        if (!interrupted)
          std::fprintf(stderr, "error: rank %zu %s; stopping the other %d rank%s\n", rank, describe(status).c_str(), running,
                       running == 1 ? "" : "s");
        // An interrupted job's other ranks get time to save; a failed job's are stopped now.
        stop_deadline = std::chrono::steady_clock::now() + std::chrono::seconds(interrupted ? 30 : 0);
      }
      continue;
    }
    if (g_terminate && !stopping) {
      std::fprintf(stderr, "error: the launcher was asked to stop; stopping the %d rank%s\n", running, running == 1 ? "" : "s");
      stopping = true;
      result = kFailure;
      stop_deadline = std::chrono::steady_clock::now();
    }
    if (g_interrupted && !forwarded_interrupt) {
      forwarded_interrupt = true;
      stop_all(SIGINT);
    }
    const auto now = std::chrono::steady_clock::now();
    if (stopping && now >= stop_deadline) {
      stop_all(stop_round++ == 0 ? SIGTERM : SIGKILL);  // ten seconds after SIGTERM, SIGKILL
      stop_all(SIGCONT);  // a stopped (hung) rank takes its SIGTERM now
      stop_deadline = now + std::chrono::seconds(10);
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  return result;
}

std::shared_ptr<World> join_world(const WorldRequest& request, World::Backend backend) {
  if (!request.join) return nullptr;
  if (request.join->rank != 0) log::set_console_level(log::Level::Warn);
  return World::join(*request.join, backend);
}

std::function<bool(int64_t, int64_t)> job_progress(const World* world, ProgressBar& bar) {
  if (world && !world->leader()) return [](int64_t, int64_t) { return !g_interrupted.load(); };
  return [&bar](int64_t done, int64_t total) { return bar.update(done, total); };
}

void record_devices(World* world, bool cuda, Json& meta) {
  if (!world) return;
  const char* gpu = std::getenv("CUDA_VISIBLE_DEVICES");
  world->publish("device/" + std::to_string(world->rank()), cuda ? std::string("cuda (GPU ") + (gpu ? gpu : "0") + ")" : "cpu");
  if (!world->leader()) return;
  Json devices = Json::array();
  for (int rank = 0; rank < world->size(); ++rank) devices.push_back(world->read("device/" + std::to_string(rank)));
  meta["devices"] = devices;
}

}  // namespace memmamba::cli
