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

// How common a layer's noted tokens are in the traced text: each position's token counted over
// the whole text, the median of those counts over the layer's noted positions and over every
// position. Notes on names, numbers and rare words have a far lower median than the text's.
struct NoteRarity {
  int64_t noted = 0;          // noted positions
  double noted_median = 0.0;  // median count in the text of a noted position's token (0: no notes)
  double text_median = 0.0;   // the same over every position
};
NoteRarity note_rarity(const Trace& trace, int layer);

}  // namespace memmamba
