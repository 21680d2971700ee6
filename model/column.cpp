#include "model/column.h"

#include <cstdlib>
#include <new>

#ifdef __linux__
#include <sys/mman.h>
#include <unistd.h>
#endif

namespace memmamba {

namespace {
constexpr size_t kHugePage = size_t{2} << 20;

// MEMMAMBA_NO_HUGE_PAGES=1 leaves the advice out (where the kernel's compaction for huge
// pages stalls more than the faults cost).
bool huge_pages_wanted() {
  static const bool wanted = [] {
    const char* env = std::getenv("MEMMAMBA_NO_HUGE_PAGES");
    return !(env && env[0] == '1');
  }();
  return wanted;
}
}  // namespace

void* allocate_huge_paged(size_t bytes) {
  bytes = (bytes + kHugePage - 1) / kHugePage * kHugePage;
  void* p = nullptr;
  if (posix_memalign(&p, kHugePage, bytes) != 0) throw std::bad_alloc();
#ifdef __linux__
  // Advice only: where huge pages are off (or the advice is refused) the pages stay 4 KiB.
  if (huge_pages_wanted()) madvise(p, bytes, MADV_HUGEPAGE);
#endif
  return p;
}

void free_huge_paged(void* p) { std::free(p); }

void populate_pages(void* data, size_t bytes) {
#if defined(__linux__)
#ifndef MADV_POPULATE_WRITE
#define MADV_POPULATE_WRITE 23
#endif
  const uintptr_t page = static_cast<uintptr_t>(::sysconf(_SC_PAGESIZE));
  const uintptr_t begin = reinterpret_cast<uintptr_t>(data) / page * page;
  const uintptr_t end = reinterpret_cast<uintptr_t>(data) + bytes;
  if (bytes == 0 || end <= begin) return;
  // Errors (an older kernel, memory already given back) leave the pages to be faulted in.
  madvise(reinterpret_cast<void*>(begin), end - begin, MADV_POPULATE_WRITE);
#else
  (void)data;
  (void)bytes;
#endif
}

}  // namespace memmamba
