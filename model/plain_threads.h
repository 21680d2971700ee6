// Host work split over a few plain threads: building a traced chunk's attention rows on the
// trace's thread. Plain threads, not the intra-op pool: that pool's threads belong to the
// model, and their spinning after a parallel region took the cores from this work. Torch-free.
#pragma once
#include <algorithm>
#include <cstddef>
#include <thread>
#include <vector>

namespace memmamba {

// Runs body(begin, end) over [0, n) in up to 8 ranges, one per thread, when `work` (the
// elements behind the n items) is large enough to pay for the threads; else in one call here.
template <typename Body>
void in_plain_threads(size_t n, size_t work, const Body& body) {
  const size_t workers = work >= (size_t{1} << 16) ? std::clamp<size_t>(std::thread::hardware_concurrency(), 1, 8) : 1;
  if (workers == 1 || n == 0) return body(size_t{0}, n);
  const size_t per = (n + workers - 1) / workers;
  std::vector<std::thread> threads;
  for (size_t t = 1; t < workers && t * per < n; ++t) threads.emplace_back(body, t * per, std::min(n, (t + 1) * per));
  body(size_t{0}, std::min(n, per));
  for (std::thread& th : threads) th.join();
}

}  // namespace memmamba
