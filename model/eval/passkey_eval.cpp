#include "model/eval/passkey_eval.h"

#include <torch/torch.h>

#include <algorithm>
#include <chrono>
#include <map>
#include <set>
#include <sstream>

#include "model/distributed/shared_work.h"
#include "model/eval/result.h"
#include "model/trace_builder.h"

namespace memmamba::eval {

namespace {

// Calls visit(token, character) for each token that holds some byte of a `size`-byte value at
// each of `mentions`; `character` is the value's character the token holds, or -1 where it
// holds more than one.
template <typename Visit>
void for_each_mention_token(const std::vector<int64_t>& mentions, int64_t size, const std::vector<int64_t>& begin,
                            const std::vector<int64_t>& end, Visit&& visit) {
  const int64_t T = static_cast<int64_t>(std::min(begin.size(), end.size()));
  for (const int64_t at : mentions)
    for (int64_t t = 0; t < T; ++t)
      if (begin[t] < at + size && end[t] > at) {
        const int64_t first = std::max(begin[t], at), overlap = std::min(end[t], at + size) - first;
        visit(t, overlap == 1 ? first - at : int64_t{-1});
      }
}

}  // namespace

std::vector<int64_t> passkey_key_positions(const PasskeyCase& c, const std::vector<int64_t>& begin,
                                           const std::vector<int64_t>& end) {
  // The key's tokens: those inside the digits of either mention in the needle.
  std::vector<int64_t> key_positions;
  for_each_mention_token(key_mentions(c), static_cast<int64_t>(c.key.size()), begin, end,
                         [&](int64_t t, int64_t) { key_positions.push_back(t); });
  return key_positions;
}

OtherValueTokens other_value_tokens(const PasskeyCase& c, const std::vector<int64_t>& begin,
                                    const std::vector<int64_t>& end) {
  OtherValueTokens out;
  for (size_t j = 0; j < c.needles.size(); ++j) {
    if (static_cast<int64_t>(j) == c.asked) continue;
    const NeedleInfo& n = c.needles[j];
    for_each_mention_token(mentions(c.prompt, n.value, n.begin, n.end), static_cast<int64_t>(n.value.size()), begin, end,
                           [&](int64_t t, int64_t character) { out[t] = {static_cast<int64_t>(j), character}; });
  }
  return out;
}

std::vector<int64_t> other_value_positions(const PasskeyCase& c, const std::vector<int64_t>& begin,
                                           const std::vector<int64_t>& end) {
  std::vector<int64_t> out;
  for (const auto& [position, value] : other_value_tokens(c, begin, end)) out.push_back(position);
  return out;
}

namespace {

// The first of a note's source positions that is a key token, or -1: whether the note holds the key.
int64_t key_source(const NoteInfo& note, const std::set<int64_t>& key_set) {
  for (int64_t s : note.sources)
    if (key_set.count(s) > 0) return s;
  return -1;
}

// Per answer position (the last prompt token, then each generated token), the key note that
// position's attention weighs most: which token of the key it read, and how much weight all
// key notes got. Where each mention of the key is one token per digit (the bundled tokenizer
// splits digits), `key_digit` is that token's digit index in the key, else -1. With labelled
// facts, also the note of another fact's value that it weighs most (`other_fact`, the needle;
// `other_char`, that value's character; `other_weight`): a run-on or a wrong value shows where
// it was read.
Json answer_reads(const AttentionRows& rows, const std::vector<NoteInfo>& notes, int64_t prompt_tokens,
                  const std::vector<int64_t>& key_positions, const std::set<int64_t>& key_set, const std::string& key,
                  const OtherValueTokens& other_values, bool facts) {
  // Where each mention of the key is one token per character (the bundled tokenizer splits
  // digits), a read's token gives its character index in the key.
  const int64_t digits = static_cast<int64_t>(key.size());
  const bool all_digits = std::all_of(key.begin(), key.end(), [](char ch) { return ch >= '0' && ch <= '9'; });
  const bool one_token_per_digit = all_digits && digits > 0 && !key_positions.empty() &&
                                   static_cast<int64_t>(key_positions.size()) % digits == 0 &&
                                   static_cast<int64_t>(key_positions.size()) <= 2 * digits;
  Json reads = Json::array();
  for (int64_t position = prompt_tokens - 1;; ++position) {
    const int64_t row = rows.find(position);
    if (row < 0) break;
    double on_key = 0, top_weight = 0, other_weight = 0;
    int64_t top_source = -1;
    std::pair<int64_t, int64_t> other{-1, -1};
    for (int64_t e = rows.offset[row]; e < rows.offset[row + 1]; ++e) {
      const int64_t source = key_source(notes[rows.note[e]], key_set);
      if (source < 0 && rows.weight[e] > other_weight) {
        for (int64_t s : notes[rows.note[e]].sources) {
          const auto it = other_values.find(s);
          if (it == other_values.end()) continue;
          other_weight = rows.weight[e];
          other = it->second;
          break;
        }
      }
      if (source < 0) continue;
      on_key += rows.weight[e];
      if (rows.weight[e] > top_weight) {
        top_weight = rows.weight[e];
        top_source = source;
      }
    }
    Json read = Json::object();
    read["position"] = position;
    read["weight_on_key_notes"] = on_key;
    read["top_key_source"] = top_source;
    read["top_key_weight"] = top_weight;
    int64_t digit = -1;
    if (top_source >= 0 && one_token_per_digit)
      digit = (std::find(key_positions.begin(), key_positions.end(), top_source) - key_positions.begin()) % digits;
    read["key_digit"] = digit;
    if (facts) {
      read["other_fact"] = other.first;
      read["other_char"] = other.second;
      read["other_weight"] = other_weight;
    }
    reads.push_back(read);
  }
  return reads;
}

}  // namespace

Json passkey_case_record(const PasskeyCase& c, const Trace& trace, int64_t prompt_tokens,
                         const std::vector<int64_t>& key_positions, const std::string& answer_text,
                         const OtherValueTokens& other_values) {
  const std::set<int64_t> key_set(key_positions.begin(), key_positions.end());
  std::set<int64_t> other_set;
  for (const auto& [position, value] : other_values) other_set.insert(position);
  Json r = Json::object();
  r["length"] = c.target_tokens;
  r["depth"] = c.depth;
  r["actual_depth"] = c.actual_depth;
  r["key"] = c.key;
  r["wording"] = c.wording;
  if (c.needles.size() > 1) {
    // Labelled facts: every needle, and which one the question asked for.
    Json needles = Json::array();
    for (const NeedleInfo& n : c.needles) {
      Json nj = Json::object();
      nj["label"] = n.label;
      nj["value"] = n.value;
      nj["depth"] = n.depth;
      nj["actual_depth"] = n.actual_depth;
      needles.push_back(nj);
    }
    r["needles"] = needles;
    r["asked"] = c.asked;
    // The answer gave another fact's value: the read found a note, but the wrong one.
    std::string other;
    for (size_t i = 0; i < c.needles.size(); ++i)
      if (static_cast<int64_t>(i) != c.asked && passkey_found(answer_text, c.needles[i].value)) other = c.needles[i].label;
    r["answered_other_fact"] = other;
  }
  const int64_t T = prompt_tokens;  // the trace may go on through the generated answer
  r["prompt_tokens"] = T;
  r["answer"] = answer_text;
  r["hit"] = passkey_found(answer_text, c.key);
  r["digits_right"] = passkey_digits_right(answer_text, c.key);
  Json kp = Json::array();
  for (int64_t p : key_positions) kp.push_back(p);
  r["key_token_positions"] = kp;
  // Notes that hold a key token: per layer, when each entered and left the pool.
  Json layers = Json::array();
  for (int32_t l = 0; l < static_cast<int32_t>(trace.layers.size()); ++l) {
    Json layer = Json::object();
    Json notes = Json::array();
    int64_t noted_key_tokens = 0;
    for (int64_t p : key_positions)
      if (p < static_cast<int64_t>(trace.layers[l].flags.size()) && (trace.layers[l].flags[p] & kNoted)) ++noted_key_tokens;
    for (size_t n = 0; n < trace.notes.size(); ++n) {
      const NoteInfo& note = trace.notes[n];
      if (note.layer != l) continue;
      if (key_source(note, key_set) < 0) continue;
      Json nj = Json::object();
      nj["note"] = static_cast<int64_t>(n);
      nj["priority"] = static_cast<double>(note.priority);
      const NoteLife life = note_life(trace, static_cast<int64_t>(n));
      nj["inserted_at"] = life.inserted;
      nj["evicted_at"] = life.evicted;
      nj["dropped"] = life.dropped;
      nj["in_pool_at_answer"] = life.inserted >= 0 && (life.evicted < 0 || life.evicted >= T - 1);
      notes.push_back(nj);
    }
    layer["key_tokens_noted"] = noted_key_tokens;
    layer["key_notes"] = notes;
    int64_t key_in_scan = 0;
    for (int64_t p : key_positions)
      if (p < static_cast<int64_t>(trace.layers[l].flags.size()) && !(trace.layers[l].flags[p] & kDecimated)) ++key_in_scan;
    layer["key_tokens_in_scan"] = key_in_scan;
    // What the answer attended to at the last prompt token (which predicts the first answer token).
    const AttentionRows& rows = trace.layers[l].token_attention;
    const int64_t row = rows.find(T - 1);
    Json attention = Json::array();
    double key_weight = 0, other_weight = 0;
    if (row >= 0) {
      for (int64_t e = rows.offset[row]; e < rows.offset[row + 1]; ++e) {
        const NoteInfo& note = trace.notes[rows.note[e]];
        const bool holds_key = key_source(note, key_set) >= 0;
        if (holds_key) key_weight += rows.weight[e];
        if (!holds_key && key_source(note, other_set) >= 0) other_weight += rows.weight[e];
        Json a = Json::object();
        a["slot"] = static_cast<int64_t>(rows.slot[e]);
        a["note"] = rows.note[e];
        a["weight"] = static_cast<double>(rows.weight[e]);
        a["holds_key"] = holds_key;
        attention.push_back(a);
      }
    }
    layer["answer_attention"] = attention;
    layer["answer_weight_on_key_notes"] = key_weight;
    // Labelled facts: the weight on the other facts' values. A read that found the asked label
    // puts its weight on the key; one that found a value but not by its label spreads it.
    if (c.needles.size() > 1) layer["answer_weight_on_other_values"] = other_weight;
    layer["answer_reads"] = answer_reads(rows, trace.notes, T, key_positions, key_set, c.key, other_values, c.needles.size() > 1);
    layers.push_back(layer);
  }
  r["layers"] = layers;
  // DeciMamba: did the key's tokens survive every decimating layer (are they in the last
  // layer's scan, which no later layer shrinks)?
  bool decimated = false;
  for (const LayerTrace& lt : trace.layers)
    for (int64_t p = 0; p < std::min<int64_t>(T, static_cast<int64_t>(lt.flags.size())) && !decimated; ++p)
      decimated = (lt.flags[p] & kDecimated) != 0;
  if (decimated && !trace.layers.empty()) {
    const int64_t kept = layers.as_array().back().at("key_tokens_in_scan").as_int();
    r["key_tokens_kept"] = kept;
    r["key_survived_decimation"] = kept == static_cast<int64_t>(key_positions.size()) && kept > 0;
  }
  return r;
}

int64_t answer_token_budget(const PasskeyCase& c, int64_t at_least) {
  return std::max(at_least, static_cast<int64_t>(c.key.size()) + 3);
}

namespace {

Json run_case(const MemMambaModel& model, const Tokenizer& tokenizer, const PasskeyCase& c,
              const PasskeyGridOptions& options, bool drop_key_notes) {
  torch::NoGradGuard no_grad;
  const auto t0 = std::chrono::steady_clock::now();
  Encoding enc = tokenizer.encode(c.prompt);
  const int64_t T = static_cast<int64_t>(enc.ids.size());
  const std::vector<int64_t> key_positions = passkey_key_positions(c, enc.begin, enc.end);
  TraceOptions topts;
  topts.attention_topk = options.attention_topk;
  topts.detail_begin = T - 1;  // attention rows only where the answer is produced
  TraceBuilder builder(model.config(), topts);
  RunOptions run = options.run;
  if (drop_key_notes && !key_positions.empty()) {
    std::vector<MemoryEdit> edits = options.run.edits ? options.run.edits->edits() : std::vector<MemoryEdit>{};
    MemoryEdit drop;
    drop.kind = MemoryEdit::Kind::DropFrom;
    drop.begin = *std::min_element(key_positions.begin(), key_positions.end());
    drop.end = *std::max_element(key_positions.begin(), key_positions.end()) + 1;
    edits.push_back(drop);
    run.edits = std::make_shared<const MemoryEdits>(std::move(edits), model.config(), T);
  }
  run.observer = &builder;
  run.keep_hidden = false;
  torch::Tensor last_hidden;
  run.on_hidden = [&](int64_t, const torch::Tensor& h) { last_hidden = h.select(1, h.size(1) - 1); };
  RunState state = model.new_state(1);
  std::vector<int64_t> ids(enc.ids.begin(), enc.ids.end());
  model.forward(torch::tensor(ids, torch::kInt64).view({1, T}), state, run);
  auto logits = model.logits(last_hidden);
  std::vector<int32_t> answer;
  RunOptions step_run = run;
  step_run.on_hidden = nullptr;
  const int64_t budget = answer_token_budget(c, options.max_new_tokens);
  for (int64_t i = 0; i < budget; ++i) {
    const int64_t next = logits.argmax(-1).item<int64_t>();
    answer.push_back(static_cast<int32_t>(next));
    if (i + 1 == budget) break;
    logits = model.step(torch::tensor({next}, torch::kInt64), state, step_run);
  }
  const std::string answer_text = tokenizer.decode(answer);
  Trace trace = builder.finish();

  Json r = passkey_case_record(c, trace, T, key_positions, answer_text, other_value_tokens(c, enc.begin, enc.end));
  Json pieces = Json::array();
  for (int32_t id : answer) pieces.push_back(tokenizer.piece(id));  // "▁" marks a space
  r["answer_pieces"] = pieces;
  r["seconds"] = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return r;
}

}  // namespace

Json run_passkey_case(const MemMambaModel& model, const Tokenizer& tokenizer, const PasskeyCase& c,
                      const PasskeyGridOptions& options) {
  return run_case(model, tokenizer, c, options, false);
}

Json run_passkey_grid(const MemMambaModel& model, const Tokenizer& tokenizer, const PasskeyGenerator& generator,
                      const PasskeyGridOptions& options, const std::function<bool(int64_t, int64_t)>& progress) {
  if (options.samples < 1) throw std::invalid_argument("passkey: at least one sample per cell");
  const bool drop_runs = options.drop_key_notes && model.config().memory && options.run.memory.enabled;
  struct CaseAt {
    int64_t length;
    double depth;
    int64_t sample;
  };
  std::vector<CaseAt> grid;
  for (int64_t length : options.lengths)
    for (double depth : options.depths)
      for (int64_t s = 0; s < options.samples; ++s) grid.push_back({length, depth, s});
  const std::vector<std::string> records = share_units(
      options.world, "passkey", static_cast<int64_t>(grid.size()),
      [&](int64_t unit) {
        const CaseAt& at = grid[static_cast<size_t>(unit)];
        const PasskeyCase c = generator.make(at.length, at.depth, options.seed * 1000003 + static_cast<uint64_t>(at.sample), options.spec);
        Json r = run_case(model, tokenizer, c, options, false);
        r["sample"] = at.sample;
        if (drop_runs) {
          const Json dropped = run_case(model, tokenizer, c, options, true);
          Json d = Json::object();
          d["answer"] = dropped.at("answer");
          d["hit"] = dropped.at("hit");
          d["digits_right"] = dropped.at("digits_right");
          r["notes_dropped"] = d;
        }
        return r.dump();
      },
      progress);
  if (records.size() != grid.size()) return Json();  // another rank's share: rank 0 writes the result
  Json cases = Json::array();
  Json cells = Json::array();
  for (size_t first = 0; first < grid.size(); first += static_cast<size_t>(options.samples)) {
    int64_t hits = 0, hits_dropped = 0;
    double digit_share = 0;
    for (size_t i = first; i < first + static_cast<size_t>(options.samples); ++i) {
      Json r = Json::parse(records[i]);
      hits += r.at("hit").as_bool();
      if (drop_runs) hits_dropped += r.at("notes_dropped").at("hit").as_bool();
      digit_share += static_cast<double>(r.at("digits_right").as_int()) /
                     static_cast<double>(std::max<size_t>(1, r.at("key").as_string().size()));
      cases.push_back(std::move(r));
    }
    Json cell = Json::object();
    cell["length"] = grid[first].length;
    cell["depth"] = grid[first].depth;
    cell["samples"] = options.samples;
    cell["accuracy"] = static_cast<double>(hits) / static_cast<double>(options.samples);
    cell["digit_accuracy"] = digit_share / static_cast<double>(options.samples);
    if (drop_runs) cell["accuracy_notes_dropped"] = static_cast<double>(hits_dropped) / static_cast<double>(options.samples);
    cells.push_back(cell);
  }
  Json out = result_header("passkey", model, options.meta, options.run.memory);
  out["seed"] = static_cast<int64_t>(options.seed);
  out["settings"]["max_new_tokens"] = options.max_new_tokens;
  if (options.run.edits && !options.run.edits->empty()) out["settings"]["memory_edits"] = options.run.edits->to_json();
  out["settings"]["drop_key_notes"] = options.drop_key_notes;
  out["settings"]["case"] = options.spec.to_json();
  out["cells"] = cells;
  out["cases"] = cases;
  return out;
}

std::string passkey_results_csv(const Json& results) {
  std::ostringstream csv;
  csv << "length,depth,sample,key,prompt_tokens,actual_depth,hit,answer,seconds,digits_right,hit_notes_dropped\n";
  for (const Json& c : results.at("cases").as_array()) {
    std::string answer = c.at("answer").as_string();
    std::string quoted = "\"";
    for (char ch : answer) {
      if (ch == '"') quoted += "\"\"";
      else if (ch == '\n' || ch == '\r') quoted += ' ';
      else quoted += ch;
    }
    quoted += "\"";
    csv << c.at("length").as_int() << ',' << c.at("depth").as_double() << ',' << c.at("sample").as_int() << ','
        << case_key_text(c) << ',' << c.at("prompt_tokens").as_int() << ',' << c.at("actual_depth").as_double()
        << ',' << (c.at("hit").as_bool() ? 1 : 0) << ',' << quoted << ',' << c.at("seconds").as_double() << ','
        << (c.contains("digits_right") ? c.at("digits_right").as_int() : 0) << ','
        << (c.contains("notes_dropped") ? (c.at("notes_dropped").at("hit").as_bool() ? "1" : "0") : "") << '\n';
  }
  return csv.str();
}

}  // namespace memmamba::eval
