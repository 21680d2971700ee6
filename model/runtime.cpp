#include "model/runtime.h"

#include <ATen/Parallel.h>
#include <torch/cuda.h>

#include <dlfcn.h>
#include <malloc.h>
#include <sched.h>

#include <unistd.h>

#include <cstdlib>
#include <cstring>
#include <thread>

namespace memmamba {

void restart_with_fitting_blas_kernels(char** argv) {
  if (argv == nullptr || std::getenv("OPENBLAS_CORETYPE") != nullptr) return;  // chosen, or already restarted
  using CoreName = char* (*)();
  const auto core_name = reinterpret_cast<CoreName>(::dlsym(RTLD_DEFAULT, "openblas_get_corename"));
  if (core_name == nullptr) return;  // not OpenBLAS
  const char* name = core_name();
  if (name == nullptr || std::strcmp(name, "Prescott") != 0) return;
  __builtin_cpu_init();
  const char* fitting = nullptr;
  if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512dq") &&
      __builtin_cpu_supports("avx512vl"))
    fitting = "SkylakeX";  // measured on an Emerald Rapids core: matrix products 2.5x faster
  else if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"))
    fitting = "Haswell";
  if (fitting == nullptr) return;  // an old CPU: Prescott is right
  ::setenv("OPENBLAS_CORETYPE", fitting, 1);
  ::execv("/proc/self/exe", argv);
  ::unsetenv("OPENBLAS_CORETYPE");  // the restart failed: go on as loaded
}

void configure_cpu_runtime() {
  // OpenBLAS's own thread pool fights LibTorch's OpenMP pool for the same cores (measured:
  // 1.5x slower with both at 2 threads on 2 cores); OpenMP alone does better.
  using SetThreads = void (*)(int);
  if (auto set_blas_threads = reinterpret_cast<SetThreads>(::dlsym(RTLD_DEFAULT, "openblas_set_num_threads")))
    set_blas_threads(1);
  // Large tensors come and go every chunk: keep freed memory in the heap instead of
  // returning it to the kernel, or every allocation pays page faults again (measured:
  // elementwise ops 4.7 GB/s -> 16.6 GB/s on the 2-core machine).
  ::mallopt(M_MMAP_THRESHOLD, 32 << 20);
  ::mallopt(M_TRIM_THRESHOLD, 1 << 30);
  // Threads: MEMMAMBA_THREADS when set, else the cores this process may run on (the
  // affinity mask, which containers narrow; hardware_concurrency counts the whole host).
  int cores = static_cast<int>(std::thread::hardware_concurrency());
  cpu_set_t mask;
  if (::sched_getaffinity(0, sizeof mask, &mask) == 0) cores = CPU_COUNT(&mask);
  if (const char* env = std::getenv("MEMMAMBA_THREADS")) {
    const int wanted = std::atoi(env);
    if (wanted > 0) cores = wanted;
  }
  if (cores > 0 && at::get_num_threads() != cores) at::set_num_threads(cores);
}

bool cuda_available() { return torch::cuda::is_available(); }
int cuda_device_count() { return cuda_available() ? static_cast<int>(torch::cuda::device_count()) : 0; }

std::string device_choice_error(const std::string& name) {
  if (name != "cpu" && name != "cuda") return "--device must be cpu or cuda, not \"" + name + "\"";
  if (name == "cuda" && !cuda_available()) return "--device cuda: no CUDA device is available to this build";
  return {};
}

}  // namespace memmamba
