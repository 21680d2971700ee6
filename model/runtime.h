// Process set-up and what the machine offers: CPU threads, BLAS and heap for the model, the
// GPU's presence and the memory of Torch's CUDA allocator.
#pragma once
#include <cstdint>
#include <string>

namespace memmamba {

// Call first in main(): where the BLAS under LibTorch is OpenBLAS and it took its slowest
// kernels (Prescott) because it does not know this CPU (Debian 12's 0.3.21 and Intel's
// Emerald Rapids, for one) although the CPU runs AVX-512 or AVX2 ones, the process starts
// itself again with OPENBLAS_CORETYPE set to them (OpenBLAS reads it only as it loads).
// Returns when nothing needs changing, the user set OPENBLAS_CORETYPE, or the restart failed.
void restart_with_fitting_blas_kernels(char** argv);

// Call once at start-up: intra-op threads = the machine's cores (LibTorch may start at 1),
// single-threaded BLAS beside them, and a heap that keeps freed chunk buffers.
void configure_cpu_runtime();

// Whether this build and machine can run on a GPU.
bool cuda_available();
// GPUs this process sees (0 without CUDA).
int cuda_device_count();

// Checks a device the user named: "cpu", or "cuda" where cuda_available(). Returns "" when it
// can be used, else the message for the user ("--device must be cpu or cuda, not ...").
std::string device_choice_error(const std::string& name);

}  // namespace memmamba

// The GPU memory of Torch's caching allocator: freeing its cache after an out-of-memory
// error, and (for tests of the fallback) its peak and a limit.
namespace memmamba::cuda_memory {
#ifdef MEMMAMBA_WITH_CUDA
void release_cached();
int64_t peak_allocated_bytes();
void reset_peak();
void set_limit_bytes(int64_t bytes);  // <= 0: no limit
#else
inline void release_cached() {}
inline int64_t peak_allocated_bytes() { return 0; }
inline void reset_peak() {}
inline void set_limit_bytes(int64_t) {}
#endif
}  // namespace memmamba::cuda_memory
