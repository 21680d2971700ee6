#include "model/eval/perplexity.h"

#include <chrono>
#include <cmath>
#include <stdexcept>

#include "model/eval/result.h"
#include "model/runner.h"

namespace memmamba::eval {
namespace {

// Sum of the losses that score tokens [end - scored, end): loss[t] scores token t + 1.
double scored_nll(const std::vector<float>& loss, int64_t end, int64_t scored) {
  double nll = 0;
  for (int64_t t = end - scored - 1; t < end - 1; ++t) nll += loss[static_cast<size_t>(t)];
  return nll;
}

// One pooled row of the positions or by_context table; `key` names what L is.
Json pooled_row(const char* key, int64_t L, int64_t windows, double nll, int64_t count) {
  Json row = Json::object();
  row[key] = L;
  row["windows"] = windows;
  row["scored_tokens"] = count;
  row["mean_nll"] = nll / static_cast<double>(count);
  row["perplexity"] = std::exp(nll / static_cast<double>(count));
  return row;
}

}  // namespace

Json perplexity_by_length(const MemMambaModel& model, const std::vector<int32_t>& tokens,
                          const PerplexityOptions& options, const std::function<bool(int64_t, int64_t)>& progress) {
  if (options.scored < 1 || options.windows < 1) throw std::invalid_argument("perplexity: windows and scored tokens must be positive");
  const int64_t T = static_cast<int64_t>(tokens.size());
  // The windows of the longest length that fits, kept to score every shorter position in the
  // same text: the loss at position p with all p tokens before it as context.
  int64_t longest = 0;
  for (int64_t L : options.lengths)
    if (T / std::max<int64_t>(L, 1) >= 1) longest = std::max(longest, L);
  int64_t total = 0;
  for (int64_t L : options.lengths) {
    total += std::min<int64_t>(options.windows, T / std::max<int64_t>(L, 1));
    if (options.by_context && L < longest) total += std::min<int64_t>(options.windows, T / longest);
  }
  int64_t done = 0;
  Json rows = Json::array();
  std::vector<std::vector<float>> longest_losses;
  for (int64_t L : options.lengths) {
    if (L <= options.scored) throw std::invalid_argument("perplexity: a context length must exceed the scored tokens");
    const int64_t n_windows = std::min<int64_t>(options.windows, T / L);
    double nll = 0;
    int64_t count = 0;
    Json window_nll = Json::array();
    const auto t0 = std::chrono::steady_clock::now();
    for (int64_t k = 0; k < n_windows; ++k) {
      std::vector<int32_t> window(tokens.begin() + k * L, tokens.begin() + (k + 1) * L);
      const std::vector<float> loss = token_losses(model, window, options.run);
      if (L == longest && static_cast<int64_t>(longest_losses.size()) < n_windows) longest_losses.push_back(loss);
      const double w = scored_nll(loss, L, options.scored);
      nll += w;
      count += options.scored;
      window_nll.push_back(w / options.scored);
      if (progress && !progress(++done, total)) throw Cancelled();
    }
    Json row = Json::object();
    row["length"] = L;
    row["windows"] = n_windows;
    row["scored_tokens"] = count;
    row["mean_nll"] = count ? nll / count : std::nan("");
    row["perplexity"] = count ? std::exp(nll / count) : std::nan("");
    row["window_nll"] = window_nll;
    row["seconds"] = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    rows.push_back(row);
  }
  Json out = result_header("perplexity_by_length", model, options.meta, options.run.memory);
  out["book_tokens"] = T;
  out["scored_per_window"] = options.scored;
  out["lengths"] = rows;
  // Perplexity by position within the same windows: tokens [L - scored, L) of each window of
  // the longest length, for every L; shorter lengths no longer differ in the text they score.
  Json positions = Json::array();
  for (int64_t L : options.lengths) {
    if (longest_losses.empty() || L > longest) continue;
    double nll = 0;
    for (const std::vector<float>& loss : longest_losses) nll += scored_nll(loss, L, options.scored);
    const auto windows = static_cast<int64_t>(longest_losses.size());
    positions.push_back(pooled_row("position", L, windows, nll, windows * options.scored));
  }
  out["positions"] = positions;
  out["positions_window_length"] = longest;
  if (!options.by_context) return out;
  // The same scored tokens with less context: window k of the longest length ends at
  // (k + 1) * longest; its last `scored` tokens are scored again after only L tokens.
  Json by_context = Json::array();
  for (int64_t L : options.lengths) {
    if (longest_losses.empty() || L > longest) continue;
    double nll = 0;
    for (size_t k = 0; k < longest_losses.size(); ++k) {
      if (L == longest) {
        nll += scored_nll(longest_losses[k], L, options.scored);
        continue;
      }
      const int64_t end = static_cast<int64_t>(k + 1) * longest;
      nll += scored_nll(token_losses(model, std::vector<int32_t>(tokens.begin() + (end - L), tokens.begin() + end), options.run), L,
                        options.scored);
      if (progress && !progress(++done, total)) throw Cancelled();
    }
    const auto windows = static_cast<int64_t>(longest_losses.size());
    by_context.push_back(pooled_row("context", L, windows, nll, windows * options.scored));
  }
  out["by_context"] = by_context;
  return out;
}

}  // namespace memmamba::eval
