// Which strings a layer notes most: the noted tokens' text, counted. Answers "are the notes
// informative (names, numbers, rare words) or noise?" for the CLI (`memmamba info TRACE
// --top-noted N`) and the Explorer's "Most noted" list. Torch-free.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "model/trace.h"

namespace memmamba {

struct NotedString {
  std::string text;           // the token's text, spaces around it trimmed ("#id" without text)
  int64_t count = 0;          // noted positions with this text in the layer
  int64_t first = -1;         // the first such position
  std::vector<int64_t> positions;  // every such position, ascending
};

// The `top` most-noted strings of `layer` (all with top 0), by count, then first position.
// Empty for a layer the trace does not have.
std::vector<NotedString> most_noted_strings(const Trace& trace, int layer, size_t top);
// Noted positions of `layer` in all.
int64_t noted_count(const Trace& trace, int layer);

}  // namespace memmamba
