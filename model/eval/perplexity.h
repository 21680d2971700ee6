// Perplexity by context length (the paper's table 1 protocol, eval-protocols.md): for each
// context length L, up to `windows` non-overlapping windows of L tokens from the book, the
// loss of the last `scored` tokens of each window; perplexity = exp(mean NLL). Also, under
// "positions", perplexity by position within the same windows (those of the longest length
// that fits): the tokens ending at each length L, so every row scores the same windows.
// With `by_context`, also "by_context": the same tokens (the last `scored` of each of those
// windows) scored with only the L tokens before their end as context, for every L: the rows
// differ in context alone, not in the text they score.
#pragma once
#include <cstdint>
#include <functional>
#include <vector>

#include "model/distributed/world.h"
#include "model/json.h"
#include "model/memmamba.h"

namespace memmamba::eval {

struct PerplexityOptions {
  std::vector<int64_t> lengths{1024, 2048, 4096, 10240, 20480, 30720, 40960, 61440};
  int64_t windows = 10;
  int64_t scored = 100;
  bool by_context = false;
  RunOptions run;
  Json meta = Json::object();
  // Spread the windows over this world's ranks (null: all here); only rank 0 gets the result.
  World* world = nullptr;
};

// Lengths longer than the book are reported with zero windows. `progress` may cancel. With a
// world of several ranks, the other ranks return null.
Json perplexity_by_length(const MemMambaModel& model, const std::vector<int32_t>& tokens,
                          const PerplexityOptions& options,
                          const std::function<bool(int64_t done, int64_t total)>& progress = {});

}  // namespace memmamba::eval
