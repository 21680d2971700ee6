#include "model/noted_strings.h"

#include <algorithm>
#include <unordered_map>

namespace memmamba {

namespace {
std::string token_string(const Trace& trace, int64_t t) {
  const std::optional<std::string_view> bytes = trace.token_bytes(t);
  if (!bytes || bytes->empty()) return "#" + std::to_string(trace.tokens[t]);
  const size_t b = bytes->find_first_not_of(" \t\r\n");
  if (b == std::string_view::npos) return "\u2423";
  return std::string(bytes->substr(b, bytes->find_last_not_of(" \t\r\n") - b + 1));
}
}  // namespace

int64_t noted_count(const Trace& trace, int layer) {
  if (layer < 0 || layer >= static_cast<int>(trace.layers.size())) return 0;
  const auto& flags = trace.layers[layer].flags;
  return std::count_if(flags.begin(), flags.end(), [](uint8_t f) { return (f & kNoted) != 0; });
}

std::vector<NotedString> most_noted_strings(const Trace& trace, int layer, size_t top) {
  std::vector<NotedString> out;
  if (layer < 0 || layer >= static_cast<int>(trace.layers.size())) return out;
  const auto& flags = trace.layers[layer].flags;
  const int64_t n = std::min<int64_t>(static_cast<int64_t>(flags.size()), trace.length());
  std::unordered_map<std::string, size_t> index;
  for (int64_t t = 0; t < n; ++t) {
    if (!(flags[t] & kNoted)) continue;
    const std::string s = token_string(trace, t);
    auto [it, added] = index.emplace(s, out.size());
    if (added) out.push_back(NotedString{s, 0, t, {}});
    NotedString& entry = out[it->second];
    ++entry.count;
    entry.positions.push_back(t);
  }
  std::stable_sort(out.begin(), out.end(), [](const NotedString& a, const NotedString& b) {
    return a.count != b.count ? a.count > b.count : a.first < b.first;
  });
  if (top > 0 && out.size() > top) out.resize(top);
  return out;
}

}  // namespace memmamba
