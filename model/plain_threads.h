// Host work split over a few plain threads: building a traced chunk's attention rows on the
// trace's thread. Plain threads, not the intra-op pool: that pool's threads belong to the
// model, and their spinning after a parallel region took the cores from this work. The
// threads are made once and sleep between fan-outs (making them for every read was a
// measurable part of a traced GPU chunk). Torch-free.
#pragma once
#include <algorithm>
#include <cstddef>
#include <functional>

namespace memmamba {

// How many threads a fan-out uses, this one included (at most 8).
size_t plain_thread_count();
// Runs task(0) .. task(count - 1) at once, one each on the shared threads and this one
// (count <= plain_thread_count()), and returns when all are done, rethrowing the first error.
// One fan-out at a time: another caller waits for the threads.
void run_on_plain_threads(size_t count, const std::function<void(size_t)>& task);

// Runs body(begin, end) over [0, n) in up to plain_thread_count() ranges, when `work` (the
// elements behind the n items) is large enough to pay for the threads; else in one call here.
template <typename Body>
void in_plain_threads(size_t n, size_t work, const Body& body) {
  const size_t threads = work >= (size_t{1} << 16) ? plain_thread_count() : 1;
  if (threads <= 1 || n == 0) return body(size_t{0}, n);
  const size_t per = (n + threads - 1) / threads;
  const size_t parts = (n + per - 1) / per;
  run_on_plain_threads(parts, [&](size_t part) { body(part * per, std::min(n, (part + 1) * per)); });
}

}  // namespace memmamba
