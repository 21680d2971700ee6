#include "model/distributed/world.h"

#include <torch/torch.h>
#include <torch/csrc/distributed/c10d/PrefixStore.hpp>
#include <torch/csrc/distributed/c10d/TCPStore.hpp>
#ifdef MEMMAMBA_WITH_GLOO
#include <torch/csrc/distributed/c10d/ProcessGroupGloo.hpp>
#endif
#ifdef MEMMAMBA_WITH_NCCL
#include <torch/csrc/distributed/c10d/ProcessGroupNCCL.hpp>
#endif

#include <cstdlib>
#include <limits>

#include "model/log.h"

namespace memmamba {

namespace {

// An environment variable as a whole number in [lo, hi]; `fallback` when unset.
int env_int(const char* name, int fallback, int lo, int hi) {
  const char* text = std::getenv(name);
  if (!text || !*text) return fallback;
  char* end = nullptr;
  const long value = std::strtol(text, &end, 10);
  if (*end != '\0' || value < lo || value > hi)
    throw DistributedError(std::string(name) + " must be a whole number from " + std::to_string(lo) + " to " +
                           std::to_string(hi) + ", not \"" + text + "\"");
  return static_cast<int>(value);
}

bool loopback(const std::string& address) {
  return address == "127.0.0.1" || address == "localhost" || address == "::1";
}

std::vector<uint8_t> bytes(const std::string& text) { return {text.begin(), text.end()}; }

// Ends a process group cleanly where the LibTorch at hand can (newer ones warn at exit when a
// group was not shut down); a no-op where it has no shutdown().
template <typename Group>
auto shut_down(Group& group, int) -> decltype(group.shutdown(), void()) {
  try {
    group.shutdown();
  } catch (const std::exception&) {
  }
}
template <typename Group>
void shut_down(Group&, long) {}

}  // namespace

bool world_from_environment(WorldOptions& out) {
  const char* size = std::getenv("WORLD_SIZE");
  if (!size || !*size) return false;
  out.size = env_int("WORLD_SIZE", 1, 1, 1 << 16);
  out.rank = env_int("RANK", 0, 0, out.size - 1);
  out.local_rank = env_int("LOCAL_RANK", out.rank, 0, 1 << 16);
  if (const char* addr = std::getenv("MASTER_ADDR"); addr && *addr) out.master_addr = addr;
  out.master_port = env_int("MASTER_PORT", out.master_port, 1, 65535);
  return true;
}

struct World::Impl {
  ~Impl() {
#ifdef MEMMAMBA_WITH_NCCL
    if (nccl) shut_down(*nccl, 0);
#endif
  }
  c10::intrusive_ptr<c10d::Store> store;
#ifdef MEMMAMBA_WITH_GLOO
  c10::intrusive_ptr<c10d::ProcessGroupGloo> gloo;
#endif
#ifdef MEMMAMBA_WITH_NCCL
  c10::intrusive_ptr<c10d::ProcessGroupNCCL> nccl;
#endif

  // Runs `call` on whichever process group this world started.
  template <typename Call>
  c10::intrusive_ptr<c10d::Work> on_group(Call call) {
#ifdef MEMMAMBA_WITH_NCCL
    if (nccl) return call(*nccl);
#endif
#ifdef MEMMAMBA_WITH_GLOO
    if (gloo) return call(*gloo);
#endif
    throw DistributedError("this world was joined without a process group");
  }
};

std::shared_ptr<World> World::join(const WorldOptions& options, Backend backend) {
  if (options.size < 1 || options.rank < 0 || options.rank >= options.size)
    throw DistributedError("rank " + std::to_string(options.rank) + " is outside a world of " + std::to_string(options.size));
  std::shared_ptr<World> world(new World());
  world->options_ = options;
  world->backend_ = backend;
  world->impl_ = std::make_unique<Impl>();
  c10d::TCPStoreOptions store_options;
  store_options.port = static_cast<std::uint16_t>(options.master_port);
  store_options.isServer = options.rank == 0;
  store_options.numWorkers = static_cast<std::size_t>(options.size);
  store_options.waitWorkers = true;
  store_options.timeout = options.timeout;
  try {
    world->impl_->store = c10::make_intrusive<c10d::TCPStore>(options.master_addr, store_options);
  } catch (const std::exception& e) {
    throw DistributedError("rank " + std::to_string(options.rank) + " could not meet the other ranks at " +
                           options.master_addr + ":" + std::to_string(options.master_port) + " within " +
                           std::to_string(options.timeout.count()) + " s: " + e.what());
  }
  const auto group_store = c10::make_intrusive<c10d::PrefixStore>("group", world->impl_->store);
  if (backend == Backend::Nccl) {
#ifdef MEMMAMBA_WITH_NCCL
    // A collective that outlives the timeout aborts the process (NCCL's watchdog), so a hung
    // rank cannot hold the others forever.
    ::setenv("TORCH_NCCL_ASYNC_ERROR_HANDLING", "1", 0);
    // Its watchdog otherwise sleeps 4 x 15 s for debug dumps before it ends the process
    // (measured: 91 s from a rank's hang to the job's end at a 20 s timeout).
    ::setenv("TORCH_NCCL_DUMP_ON_TIMEOUT", "0", 0);
    ::setenv("TORCH_NCCL_WAIT_TIMEOUT_DUMP_MILSEC", "500", 0);
    auto group_options = c10d::ProcessGroupNCCL::Options::create();
    group_options->timeout = options.timeout;
    world->impl_->nccl = c10::make_intrusive<c10d::ProcessGroupNCCL>(group_store, options.rank, options.size, group_options);
#else
    throw DistributedError("this build has no NCCL (the CUDA LibTorch and nccl.h are needed)");
#endif
  } else if (backend == Backend::Gloo) {
#ifdef MEMMAMBA_WITH_GLOO
    auto group_options = c10d::ProcessGroupGloo::Options::create(options.timeout);
    const char* interface = std::getenv("GLOO_SOCKET_IFNAME");
    if (interface && *interface)
      group_options->devices.push_back(c10d::ProcessGroupGloo::createDeviceForInterface(interface));
    else if (loopback(options.master_addr))
      group_options->devices.push_back(c10d::ProcessGroupGloo::createDeviceForHostname("127.0.0.1"));
    else
      group_options->devices.push_back(c10d::ProcessGroupGloo::createDefaultDevice());
    group_options->threads = 2;
    world->impl_->gloo = c10::make_intrusive<c10d::ProcessGroupGloo>(group_store, options.rank, options.size, group_options);
#else
    throw DistributedError("this build has no gloo (Debian's libgloo-dev is needed for training on several CPU processes)");
#endif
  }
  log::debug("rank " + std::to_string(options.rank) + " of " + std::to_string(options.size) + " joined");
  return world;
}

World::~World() = default;

void World::all_reduce_sum(torch::Tensor& tensor) { all_reduce_sum_async(tensor)(); }

std::function<void()> World::all_reduce_sum_async(torch::Tensor& tensor) {
  std::vector<at::Tensor> tensors{tensor};
  auto work = impl_->on_group([&](auto& group) { return group.allreduce(tensors); });
  return [work, rank = options_.rank]() {
    try {
      work->wait();
    } catch (const std::exception& e) {
      throw DistributedError("rank " + std::to_string(rank) + ": a sum over the ranks failed: " + e.what());
    }
  };
}

void World::broadcast_from_leader(torch::Tensor& tensor) {
  std::vector<at::Tensor> tensors{tensor};
  auto work = impl_->on_group([&](auto& group) { return group.broadcast(tensors); });
  try {
    work->wait();
  } catch (const std::exception& e) {
    throw DistributedError("rank " + std::to_string(options_.rank) + ": a broadcast from rank 0 failed: " + e.what());
  }
}

int64_t World::take_ticket(const std::string& counter) { return impl_->store->add("ticket/" + counter, 1) - 1; }

int64_t World::peek_counter(const std::string& counter) { return impl_->store->add("ticket/" + counter, 0); }

void World::publish(const std::string& key, const std::string& value) { impl_->store->set("value/" + key, bytes(value)); }

std::string World::read(const std::string& key) {
  try {
    const std::vector<uint8_t> value = impl_->store->get("value/" + key);
    return std::string(value.begin(), value.end());
  } catch (const std::exception& e) {
    throw DistributedError("rank " + std::to_string(options_.rank) + " could not read \"" + key + "\" from the store: " + e.what());
  }
}

}  // namespace memmamba
