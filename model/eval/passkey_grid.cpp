#include "model/eval/passkey_grid.h"

#include <algorithm>
#include <cctype>
#include <cmath>
#include <map>
#include <stdexcept>

#include "model/eval/retrieval_case.h"
#include "model/file_io.h"

namespace memmamba::eval {

namespace {
int index_of(const std::vector<double>& values, double x) {
  for (size_t i = 0; i < values.size(); ++i)
    if (std::abs(values[i] - x) < 1e-9) return static_cast<int>(i);
  return -1;
}

// A docs result as a grid: each cell's share of cases answered with the golden id.
PasskeyGrid parse_document_grid(const Json& results) {
  PasskeyGrid grid;
  grid.documents = true;
  std::map<std::pair<int64_t, double>, std::pair<int64_t, int64_t>> counts;  // (noise, column) -> hits, cases
  for (const Json& c : results.at("cases").as_array("cases")) {
    const int64_t noise = c.at("noise_documents").as_int("noise_documents");
    const int64_t golden = c.at("golden_index").as_int("golden_index");
    const bool hit = c.at("hit").as_bool("hit");
    c.at("golden_id").as_int("golden_id");
    c.at("answer").as_string("answer");
    if (noise < 0 || noise > 999) throw std::invalid_argument("a case has " + std::to_string(noise) + " noise documents");
    if (golden < 0 || golden > noise) throw std::invalid_argument("a case's golden_index is outside its documents");
    auto& [hits, cases] = counts[{noise, document_position_bin(golden, noise)}];
    hits += hit ? 1 : 0;
    cases += 1;
  }
  if (counts.empty()) throw std::invalid_argument("the result has no cases");
  for (const auto& [cell, count] : counts) {
    if (std::find(grid.lengths.begin(), grid.lengths.end(), cell.first) == grid.lengths.end()) grid.lengths.push_back(cell.first);
    if (index_of(grid.depths, cell.second) < 0) grid.depths.push_back(cell.second);
  }
  if (grid.lengths.size() > kMaxGridLengths) throw std::invalid_argument("the result has too many noise levels");
  std::sort(grid.depths.begin(), grid.depths.end());
  grid.accuracy.assign(grid.lengths.size(), std::vector<double>(grid.depths.size(), std::nan("")));
  grid.digit_accuracy = grid.accuracy;  // an id is right or wrong: no partial credit
  for (const auto& [cell, count] : counts)
    grid.accuracy[static_cast<size_t>(grid.length_index(static_cast<double>(cell.first)))]
                 [static_cast<size_t>(index_of(grid.depths, cell.second))] =
        static_cast<double>(count.first) / static_cast<double>(count.second);
  std::string levels;
  for (int64_t n : grid.lengths) levels += (levels.empty() ? "" : "/") + std::to_string(n);
  grid.case_description = "document ids, " + levels + " noise documents";
  return grid;
}
}  // namespace

double document_position_bin(int64_t golden_index, int64_t noise_documents) {
  const int64_t third = std::clamp<int64_t>(golden_index * 3 / std::max<int64_t>(1, noise_documents + 1), 0, 2);
  return (static_cast<double>(third) + 0.5) / 3.0;
}

namespace {
// The reads of the deepest layer in a docs case, in answer order (throws on malformed records).
std::vector<const Json*> deepest_reads(const Json& case_record) {
  std::vector<const Json*> reads;
  if (!case_record.contains("reads") || !case_record.at("reads").is_array()) return reads;
  int64_t deepest = -1;
  for (const Json& read : case_record.at("reads").as_array()) deepest = std::max(deepest, read.at("layer").as_int());
  for (const Json& read : case_record.at("reads").as_array())
    if (read.at("layer").as_int() == deepest) reads.push_back(&read);
  return reads;
}
}  // namespace

int64_t first_digit_read_document(const Json& case_record) {
  try {
    if (!case_record.contains("answer_pieces")) return -2;
    const auto& pieces = case_record.at("answer_pieces").as_array();
    int64_t first_digit = -1;
    for (size_t i = 0; i < pieces.size() && first_digit < 0; ++i) {
      std::string piece = readable_piece(pieces[i].as_string());
      const std::string space = "\u2581";
      if (piece.compare(0, space.size(), space) == 0) piece.erase(0, space.size());
      if (!piece.empty() && std::isdigit(static_cast<unsigned char>(piece[0]))) first_digit = static_cast<int64_t>(i);
    }
    if (first_digit < 0) return -2;
    for (const Json* read : deepest_reads(case_record))
      if (read->at("answer_token").as_int() == first_digit && read->contains("top_document"))
        return std::max<int64_t>(-1, read->at("top_document").as_int());
  } catch (const std::exception&) {  // a malformed record says nothing
  }
  return -2;
}

std::string document_read_path(const Json& case_record) try {
  const int64_t golden = case_record.contains("golden_index") ? case_record.at("golden_index").as_int() : -1;
  std::string path;
  for (const Json* read_pointer : deepest_reads(case_record)) {
    const Json& read = *read_pointer;
    if (!read.contains("top_region")) continue;
    const std::string region = read.at("top_region").as_string();
    const int64_t document = read.contains("top_document") ? read.at("top_document").as_int() : -1;
    const int64_t id_char = read.contains("top_id_char") ? read.at("top_id_char").as_int() : -1;
    std::string what;
    if (document >= 0 && document == golden) what = "golden id";
    else if (document >= 0) what = "document " + std::to_string(document + 1) + "'s id";
    else what = region == "fact" || region == "query" ? "the " + region : region;
    if (document >= 0 && id_char >= 0) what += " digit " + std::to_string(id_char + 1);
    // With the answer's pieces, each read is shown beside the piece it produced.
    const int64_t token = read.at("answer_token").as_int();
    if (case_record.contains("answer_pieces") && case_record.at("answer_pieces").is_array() && token >= 0 &&
        token < static_cast<int64_t>(case_record.at("answer_pieces").as_array().size()))
      what = "\"" + readable_piece(case_record.at("answer_pieces").as_array()[static_cast<size_t>(token)].as_string()) +
             "\" \u2190 " + what;
    path += (path.empty() ? "" : ", ") + what;
  }
  return path;
} catch (const std::exception&) {  // malformed reads: nothing to show
  return "";
}

bool is_document_result(const Json& results) {
  return results.is_object() && results.contains("evaluation") && results.at("evaluation").is_string() &&
         results.at("evaluation").as_string() == "noisy_document_retrieval";
}

int PasskeyGrid::length_index(double length) const {
  for (size_t i = 0; i < lengths.size(); ++i)
    if (static_cast<double>(lengths[i]) == length) return static_cast<int>(i);
  return -1;
}

int PasskeyGrid::depth_index(double depth) const { return index_of(depths, depth); }

PasskeyGrid parse_passkey_grid(const Json& results) {
  if (is_document_result(results) && results.contains("cases")) {
    try {
      return parse_document_grid(results);
    } catch (const std::invalid_argument&) {
      throw;
    } catch (const std::exception& e) {
      throw std::invalid_argument(std::string("malformed docs result: ") + e.what());
    }
  }
  if (!results.is_object() || !results.contains("cells") || !results.contains("cases"))
    throw std::invalid_argument(
        "not a passkey result (no \"cells\" and \"cases\") nor a docs result: produce one with `memmamba eval passkey`, "
        "`eval facts` or `eval docs`");
  PasskeyGrid grid;
  try {
    const Json::Array& cells = results.at("cells").as_array("cells");
    for (const Json& c : cells) {
      const int64_t length = c.at("length").as_int("length");
      const double depth = c.at("depth").as_double("depth");
      const double accuracy = c.at("accuracy").as_double("accuracy");
      if (length <= 0) throw std::invalid_argument("a cell has length " + std::to_string(length));
      if (!(depth >= 0.0 && depth <= 1.0)) throw std::invalid_argument("a cell's depth is outside [0, 1]");
      if (!(accuracy >= 0.0 && accuracy <= 1.0)) throw std::invalid_argument("a cell's accuracy is outside [0, 1]");
      if (std::find(grid.lengths.begin(), grid.lengths.end(), length) == grid.lengths.end()) grid.lengths.push_back(length);
      if (index_of(grid.depths, depth) < 0) grid.depths.push_back(depth);
      if (grid.lengths.size() > kMaxGridLengths || grid.depths.size() > kMaxGridDepths)
        throw std::invalid_argument("the grid has more than " + std::to_string(kMaxGridLengths) + " lengths or " +
                                    std::to_string(kMaxGridDepths) + " depths");
    }
    if (grid.lengths.empty()) throw std::invalid_argument("the grid has no cells");
    std::sort(grid.lengths.begin(), grid.lengths.end());
    std::sort(grid.depths.begin(), grid.depths.end());
    grid.accuracy.assign(grid.lengths.size(), std::vector<double>(grid.depths.size(), std::nan("")));
    grid.digit_accuracy = grid.accuracy;
    for (const Json& c : cells) {
      const auto li = static_cast<size_t>(std::find(grid.lengths.begin(), grid.lengths.end(), c.at("length").as_int()) -
                                          grid.lengths.begin());
      const auto di = static_cast<size_t>(index_of(grid.depths, c.at("depth").as_double()));
      grid.accuracy[li][di] = c.at("accuracy").as_double();
      if (c.contains("digit_accuracy")) {  // absent from older result files
        const double digits = c.at("digit_accuracy").as_double("digit_accuracy");
        if (!(digits >= 0.0 && digits <= 1.0)) throw std::invalid_argument("a cell's digit_accuracy is outside [0, 1]");
        grid.digit_accuracy[li][di] = digits;
      }
    }
    results.at("cases").as_array("cases");
    const CaseSpec spec = CaseSpec::of_results(results);
    grid.case_description = spec.describe();
    grid.facts = spec.facts;
  } catch (const std::invalid_argument&) {
    throw;
  } catch (const std::exception& e) {
    throw std::invalid_argument(std::string("malformed passkey result: ") + e.what());
  }
  return grid;
}

PasskeyGrid load_passkey_grid(const std::string& path, Json* results) {
  const std::string bytes = read_file(path, kMaxGridFileBytes);
  Json parsed;
  try {
    parsed = Json::parse(bytes);
  } catch (const std::exception& e) {
    throw std::invalid_argument(path + " is not valid JSON: " + e.what());
  }
  PasskeyGrid grid = parse_passkey_grid(parsed);
  if (results) *results = std::move(parsed);
  return grid;
}

namespace {
// Where the asked fact stands among a facts case's needles in text order (0: first), by their
// actual depths; -1 for a case without labelled facts or with a malformed record.
int64_t asked_fact_order(const Json& c) {
  if (!c.contains("needles") || !c.at("needles").is_array() || !c.contains("asked") || !c.at("asked").is_integer())
    return -1;
  const auto& needles = c.at("needles").as_array();
  const int64_t asked = c.at("asked").as_int();
  if (needles.size() < 2 || asked < 0 || asked >= static_cast<int64_t>(needles.size())) return -1;
  auto depth = [&](size_t i) {
    const Json& n = needles[i];
    return n.is_object() && n.contains("actual_depth") && n.at("actual_depth").is_number() ? n.at("actual_depth").as_double()
                                                                                           : std::nan("");
  };
  const double asked_depth = depth(static_cast<size_t>(asked));
  if (std::isnan(asked_depth)) return -1;
  int64_t before = 0;
  for (size_t i = 0; i < needles.size(); ++i) {
    const double d = depth(i);
    if (std::isnan(d)) return -1;
    before += d < asked_depth ? 1 : 0;
  }
  return before;
}
}  // namespace

GridBreakdown grid_breakdown(const Json& results) {
  GridBreakdown out;
  if (!results.is_object() || !results.contains("cases") || !results.at("cases").is_array()) return out;
  std::map<int64_t, GridBreakdown::Count> lengths, wordings;
  for (const Json& c : results.at("cases").as_array()) {
    if (!c.is_object() || !c.contains("hit") || !c.at("hit").is_bool() || !c.contains("answer") ||
        !c.at("answer").is_string())
      continue;
    if (c.contains("answered") && c.at("answered").is_string()) {  // a docs case
      const bool hit = c.at("hit").as_bool();
      const int64_t read = first_digit_read_document(c);
      const int64_t golden = c.contains("golden_index") && c.at("golden_index").is_integer() ? c.at("golden_index").as_int() : -3;
      auto& reads = out.first_digit_reads;
      if (read >= 0 && read == golden) reads.golden += 1, reads.golden_hits += hit;
      else if (read >= 0) reads.other += 1, reads.other_hits += hit;
      else if (read == -1) reads.elsewhere += 1;
      if (hit) continue;
      ++out.misses;
      out.document_misses.count(c.at("answered").as_string());
      continue;
    }
    if (!c.contains("key")) continue;
    const std::string key = case_key_text(c);
    if (key.empty()) continue;
    const bool hit = c.at("hit").as_bool();
    auto count = [hit](std::map<int64_t, GridBreakdown::Count>& groups, int64_t value) {
      GridBreakdown::Count& g = groups[value];
      g.value = value;
      g.cases += 1;
      g.hits += hit ? 1 : 0;
    };
    count(lengths, static_cast<int64_t>(key.size()));
    if (c.contains("wording") && c.at("wording").is_integer()) count(wordings, c.at("wording").as_int());
    if (const int64_t asked = asked_fact_order(c); asked >= 0) {
      GridBreakdown::Count& g = asked == 0 ? out.asked_first : out.asked_later;
      g.cases += 1;
      g.hits += hit ? 1 : 0;
      if (!hit && c.contains("answered_other_fact") && c.at("answered_other_fact").is_string() &&
          !c.at("answered_other_fact").as_string().empty())
        ++out.other_fact_answers;
    }
    if (hit) continue;
    ++out.misses;
    const AnswerShape shape = answer_shape(c.at("answer").as_string(), key);
    out.cut_short += shape == AnswerShape::CutShort ? 1 : 0;
    out.ran_on += shape == AnswerShape::RanOn ? 1 : 0;
  }
  for (const auto& [value, g] : lengths) out.by_key_length.push_back(g);
  for (const auto& [value, g] : wordings) out.by_wording.push_back(g);
  return out;
}

std::string GridBreakdown::describe() const {
  auto groups = [](const std::vector<Count>& counts, const std::string& title, bool wording) {
    std::string s = title;
    for (const Count& g : counts)
      s += " " + (wording && g.value < 0 ? std::string("composed") : std::to_string(g.value)) + ": " +
           std::to_string(g.hits) + "/" + std::to_string(g.cases) + ",";
    s.back() = '.';
    return s;
  };
  std::vector<std::string> parts;
  if (by_key_length.size() > 1) parts.push_back(groups(by_key_length, "Hits by key length (characters):", false));
  if (by_wording.size() > 1) parts.push_back(groups(by_wording, "By wording:", true));
  if (misses > 0 && (cut_short > 0 || ran_on > 0))
    parts.push_back("Of " + std::to_string(misses) + (misses == 1 ? " miss, " : " misses, ") + std::to_string(cut_short) +
                    " cut the key short and " + std::to_string(ran_on) + " ran on past its end.");
  if (document_misses.named() > 0)
    parts.push_back("Of " + std::to_string(misses) + (misses == 1 ? " miss, " : " misses, ") +
                    std::to_string(document_misses.other_document) + " named another document, " +
                    std::to_string(document_misses.golden_cut_short) + " cut the golden id short and " +
                    std::to_string(document_misses.no_document_id) + " named no document.");
  if (first_digit_reads.cases() > 0)
    parts.push_back("In the last layer the answer's first digit was read from the golden id in " +
                    std::to_string(first_digit_reads.golden) + " of " + std::to_string(first_digit_reads.cases()) +
                    " answers with a digit (" + std::to_string(first_digit_reads.golden_hits) + " hits) and from another document's id in " +
                    std::to_string(first_digit_reads.other) + " (" + std::to_string(first_digit_reads.other_hits) + " hits).");
  if (asked_first.cases > 0 && asked_later.cases > 0)
    parts.push_back("Hits with the asked fact first in the text: " + std::to_string(asked_first.hits) + "/" +
                    std::to_string(asked_first.cases) + ", later in it: " + std::to_string(asked_later.hits) + "/" +
                    std::to_string(asked_later.cases) + ".");
  if (asked_first.cases + asked_later.cases > 0)
    parts.push_back("Misses that answer another fact's value: " + std::to_string(other_fact_answers) + ".");
  std::string s;
  for (const std::string& p : parts) s += (s.empty() ? "" : " ") + p;
  return s;
}

}  // namespace memmamba::eval
