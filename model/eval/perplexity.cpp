#include "model/eval/perplexity.h"

#include <chrono>
#include <cmath>
#include <stdexcept>

#include "model/distributed/shared_work.h"
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
  for (int64_t L : options.lengths)
    if (L <= options.scored) throw std::invalid_argument("perplexity: a context length must exceed the scored tokens");
  const int64_t T = static_cast<int64_t>(tokens.size());
  // The windows of the longest length that fits, kept to score every shorter position in the
  // same text: the loss at position p with all p tokens before it as context.
  int64_t longest = 0;
  for (int64_t L : options.lengths)
    if (T / std::max<int64_t>(L, 1) >= 1) longest = std::max(longest, L);
  const int64_t longest_windows = longest > 0 ? std::min<int64_t>(options.windows, T / longest) : 0;
  // The units of work: window k of each length (whole context), then, with by_context, the
  // longest windows' scored tokens again after only L tokens, for every shorter L.
  struct Unit {
    int64_t length, window;
    bool again;  // a by_context rescoring
  };
  std::vector<Unit> units;
  for (int64_t L : options.lengths)
    for (int64_t k = 0; k < std::min<int64_t>(options.windows, T / L); ++k) units.push_back({L, k, false});
  if (options.by_context)
    for (int64_t L : options.lengths)
      if (L < longest)
        for (int64_t k = 0; k < longest_windows; ++k) units.push_back({L, k, true});
  const std::vector<std::string> records = share_units(
      options.world, "perplexity", static_cast<int64_t>(units.size()),
      [&](int64_t index) {
        const Unit& u = units[static_cast<size_t>(index)];
        const auto t0 = std::chrono::steady_clock::now();
        const int64_t end = u.again ? (u.window + 1) * longest : (u.window + 1) * u.length;
        const std::vector<float> loss =
            token_losses(model, std::vector<int32_t>(tokens.begin() + (end - u.length), tokens.begin() + end), options.run);
        Json r = Json::object();
        r["nll"] = scored_nll(loss, u.length, options.scored);
        if (!u.again && u.length == longest) {
          // Every shorter position of a longest window, scored in the same pass.
          Json at = Json::array();
          for (int64_t L : options.lengths) at.push_back(L <= longest ? scored_nll(loss, L, options.scored) : 0.0);
          r["positions"] = at;
        }
        r["seconds"] = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
        return r.dump();
      },
      progress);
  if (records.size() != units.size()) return Json();  // another rank's share: rank 0 writes the result
  std::vector<Json> results;
  for (const std::string& text : records) results.push_back(Json::parse(text));

  Json rows = Json::array();
  std::vector<const Json*> longest_results;  // window k of the longest length
  size_t next = 0;
  for (int64_t L : options.lengths) {
    const int64_t n_windows = std::min<int64_t>(options.windows, T / L);
    double nll = 0, seconds = 0;
    int64_t count = 0;
    Json window_nll = Json::array();
    for (int64_t k = 0; k < n_windows; ++k, ++next) {
      const Json& r = results[next];
      if (L == longest && static_cast<int64_t>(longest_results.size()) < n_windows) longest_results.push_back(&r);
      const double w = r.at("nll").as_double();
      nll += w;
      count += options.scored;
      seconds += r.at("seconds").as_double();
      window_nll.push_back(w / options.scored);
    }
    Json row = Json::object();
    row["length"] = L;
    row["windows"] = n_windows;
    row["scored_tokens"] = count;
    row["mean_nll"] = count ? nll / count : std::nan("");
    row["perplexity"] = count ? std::exp(nll / count) : std::nan("");
    row["window_nll"] = window_nll;
    row["seconds"] = seconds;
    rows.push_back(row);
  }
  Json out = result_header("perplexity_by_length", model, options.meta, options.run.memory);
  out["book_tokens"] = T;
  out["scored_per_window"] = options.scored;
  out["lengths"] = rows;
  // Perplexity by position within the same windows: tokens [L - scored, L) of each window of
  // the longest length, for every L; shorter lengths no longer differ in the text they score.
  Json positions = Json::array();
  for (size_t i = 0; i < options.lengths.size(); ++i) {
    const int64_t L = options.lengths[i];
    if (longest_results.empty() || L > longest) continue;
    double nll = 0;
    for (const Json* r : longest_results) nll += r->at("positions").as_array()[i].as_double();
    const auto windows = static_cast<int64_t>(longest_results.size());
    positions.push_back(pooled_row("position", L, windows, nll, windows * options.scored));
  }
  out["positions"] = positions;
  out["positions_window_length"] = longest;
  if (!options.by_context) return out;
  // The same scored tokens with less context: window k of the longest length ends at
  // (k + 1) * longest; its last `scored` tokens are scored again after only L tokens.
  Json by_context = Json::array();
  for (size_t i = 0; i < options.lengths.size(); ++i) {
    const int64_t L = options.lengths[i];
    if (longest_results.empty() || L > longest) continue;
    double nll = 0;
    for (size_t k = 0; k < longest_results.size(); ++k) {
      if (L == longest)
        nll += longest_results[k]->at("positions").as_array()[i].as_double();
      else
        nll += results[next++].at("nll").as_double();
    }
    const auto windows = static_cast<int64_t>(longest_results.size());
    by_context.push_back(pooled_row("context", L, windows, nll, windows * options.scored));
  }
  out["by_context"] = by_context;
  return out;
}

}  // namespace memmamba::eval
