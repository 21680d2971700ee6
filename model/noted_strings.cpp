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

namespace {
double median(std::vector<int64_t> v) {
  if (v.empty()) return 0.0;
  const size_t mid = v.size() / 2;
  std::nth_element(v.begin(), v.begin() + static_cast<std::ptrdiff_t>(mid), v.end());
  const double upper = static_cast<double>(v[mid]);
  if (v.size() % 2 == 1) return upper;
  return 0.5 * (upper + static_cast<double>(*std::max_element(v.begin(), v.begin() + static_cast<std::ptrdiff_t>(mid))));
}
}  // namespace

NoteRarity note_rarity(const Trace& trace, int layer) {
  NoteRarity out;
  if (layer < 0 || layer >= static_cast<int>(trace.layers.size())) return out;
  const auto& flags = trace.layers[layer].flags;
  const int64_t n = std::min<int64_t>(static_cast<int64_t>(flags.size()), trace.length());
  std::unordered_map<int32_t, int64_t> in_text;
  for (int64_t t = 0; t < trace.length(); ++t) ++in_text[trace.tokens[t]];
  std::vector<int64_t> noted, every;
  every.reserve(static_cast<size_t>(trace.length()));
  for (int64_t t = 0; t < trace.length(); ++t) {
    const int64_t count = in_text[trace.tokens[t]];
    every.push_back(count);
    if (t < n && (flags[t] & kNoted)) noted.push_back(count);
  }
  out.noted = static_cast<int64_t>(noted.size());
  out.noted_median = median(std::move(noted));
  out.text_median = median(std::move(every));
  return out;
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
