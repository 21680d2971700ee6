#include "model/eval/documents.h"

#include <algorithm>
#include <cctype>
#include <random>
#include <set>
#include <stdexcept>

namespace memmamba::eval {

namespace {
const char* kSubjects[] = {"the harbour gate", "the old mill", "the north tower", "the river ferry", "the copper mine",
                           "the village school", "the lighthouse", "the east bridge", "the grain store", "the chapel bell"};
const char* kProperties[] = {"code word", "keeper's number", "opening year", "secret colour", "signal count"};
const char* kWords[] = {"amber", "falcon", "juniper", "marble", "saffron", "thistle", "walnut", "cobalt", "harvest", "lantern"};

std::string collapse(const std::string& text) {
  std::string out;
  bool space = false;
  for (char c : text) {
    if (c == ' ' || c == '\n' || c == '\t' || c == '\r') { space = !out.empty(); continue; }
    if (space) out += ' ';
    space = false;
    out += c;
  }
  return out;
}
}  // namespace

std::vector<std::string> split_paragraphs(const std::string& text, int64_t min_words) {
  std::vector<std::string> out;
  size_t start = 0;
  while (start < text.size()) {
    size_t end = text.find("\n\n", start);
    if (end == std::string::npos) end = text.size();
    std::string p = collapse(text.substr(start, end - start));
    const int64_t words = p.empty() ? 0 : 1 + std::count(p.begin(), p.end(), ' ');
    if (words >= min_words) out.push_back(std::move(p));
    start = end + 2;
  }
  return out;
}

DocumentRetrievalGenerator::DocumentRetrievalGenerator(std::vector<std::string> paragraphs)
    : paragraphs_(std::move(paragraphs)) {
  if (paragraphs_.size() < 2) throw std::invalid_argument("documents: the book has too few paragraphs of 30+ words");
}

DocumentCase DocumentRetrievalGenerator::make(int64_t noise, uint64_t seed) const {
  if (noise < 0 || noise > 999) throw std::invalid_argument("documents: noise documents must be in [0, 999]");
  std::mt19937_64 rng(seed * 0x9E3779B97F4A7C15ull + static_cast<uint64_t>(noise) * 7919);
  auto pick = [&](size_t n) { return std::uniform_int_distribution<size_t>(0, n - 1)(rng); };
  DocumentCase c;
  c.noise_documents = noise;
  const std::string subject = kSubjects[pick(std::size(kSubjects))];
  const std::string property = kProperties[pick(std::size(kProperties))];
  const std::string value = std::string(kWords[pick(std::size(kWords))]) + "-" + std::to_string(100 + pick(900));
  c.question = "What is the " + property + " of " + subject + "?";
  c.fact = "The " + property + " of " + subject + " is " + value + ".";
  // Distinct ids and paragraphs; the golden document at a random position.
  std::set<int64_t> used_ids;
  const int64_t total = noise + 1;
  while (static_cast<int64_t>(used_ids.size()) < total) used_ids.insert(static_cast<int64_t>(pick(1000)));
  c.ids.assign(used_ids.begin(), used_ids.end());
  std::shuffle(c.ids.begin(), c.ids.end(), rng);
  c.golden_index = static_cast<int64_t>(pick(static_cast<size_t>(total)));
  c.golden_id = c.ids[c.golden_index];
  const size_t first = pick(paragraphs_.size());
  for (int64_t d = 0; d < total; ++d) {
    std::string doc = paragraphs_[(first + static_cast<size_t>(d)) % paragraphs_.size()];
    if (d == c.golden_index) {
      // The fact goes after a sentence boundary inside the paragraph.
      std::vector<size_t> boundaries{0};
      for (size_t i = 1; i < doc.size(); ++i)
        if (doc[i] == ' ' && (doc[i - 1] == '.' || doc[i - 1] == '!' || doc[i - 1] == '?')) boundaries.push_back(i + 1);
      const size_t at = boundaries[pick(boundaries.size())];
      doc.insert(at, c.fact + " ");
    }
    const size_t query = c.prompt.size() + 1;
    c.prompt += " <|Query|> " + c.question;
    c.query_spans.emplace_back(query, c.prompt.size());
    c.prompt += std::string(" ") + kDocumentHeader;
    const std::string id = std::to_string(c.ids[d]);
    c.id_spans.emplace_back(c.prompt.size(), c.prompt.size() + id.size());
    c.prompt += id + "|> ";
    if (d == c.golden_index) {
      const size_t fact = c.prompt.size() + doc.find(c.fact);
      c.fact_span = {fact, fact + c.fact.size()};
    }
    c.prompt += doc;
  }
  c.prompt += std::string(" <|Answer|> ") + kDocumentHeader;
  return c;
}

std::vector<TokenRegion> document_token_regions(const DocumentCase& c, const std::vector<int64_t>& begin,
                                                const std::vector<int64_t>& end) {
  if (begin.size() != end.size()) throw std::invalid_argument("documents: token ranges of unequal length");
  std::vector<TokenRegion> regions(begin.size());
  // Calls assign(token, span index) for each token that overlaps one of the spans: tokens and
  // spans are both in prompt order, so one pass over each.
  auto each_overlap = [&](const std::vector<std::pair<size_t, size_t>>& spans, auto&& assign) {
    for (size_t t = 0, s = 0; t < begin.size() && s < spans.size(); ++t) {
      while (s < spans.size() && static_cast<int64_t>(spans[s].second) <= begin[t]) ++s;
      if (s < spans.size() && begin[t] < static_cast<int64_t>(spans[s].second) && end[t] > static_cast<int64_t>(spans[s].first))
        assign(t, s);
    }
  };
  auto claim = [&](size_t t, DocumentRegion region) {  // a more telling region wins
    if (static_cast<uint8_t>(region) < static_cast<uint8_t>(regions[t].region)) regions[t].region = region;
  };
  // Everything outside the documents' texts is marks; then the finer parts claim their tokens.
  std::vector<std::pair<size_t, size_t>> texts;
  for (size_t d = 0; d < c.id_spans.size(); ++d) {
    const size_t text_begin = c.id_spans[d].second + 3;  // after "|> "
    const size_t text_end = d + 1 < c.query_spans.size() ? c.query_spans[d + 1].first - 1 : c.prompt.rfind(" <|Answer|>");
    if (text_end > text_begin) texts.emplace_back(text_begin, text_end);
  }
  for (TokenRegion& r : regions) r.region = DocumentRegion::Marks;
  each_overlap(texts, [&](size_t t, size_t) { regions[t].region = DocumentRegion::Text; });
  each_overlap(c.query_spans, [&](size_t t, size_t) { claim(t, DocumentRegion::Query); });
  if (c.fact_span.second > c.fact_span.first) each_overlap({c.fact_span}, [&](size_t t, size_t) { claim(t, DocumentRegion::Fact); });
  each_overlap(c.id_spans, [&](size_t t, size_t d) {
    claim(t, static_cast<int64_t>(d) == c.golden_index ? DocumentRegion::GoldenId : DocumentRegion::OtherId);
    regions[t].document = static_cast<int64_t>(d);
    regions[t].id_char = std::max<int64_t>(0, begin[t] - static_cast<int64_t>(c.id_spans[d].first));
  });
  return regions;
}

namespace {
// The digits an answer opens with, after its spaces (empty where it opens with anything else).
std::string leading_digits(const std::string& output) {
  size_t i = 0;
  while (i < output.size() && output[i] == ' ') ++i;
  size_t j = i;
  while (j < output.size() && std::isdigit(static_cast<unsigned char>(output[j]))) ++j;
  return output.substr(i, j - i);
}
}  // namespace

bool document_answer_correct(const std::string& output, int64_t golden_id) {
  const std::string digits = leading_digits(output);
  return !digits.empty() && digits == std::to_string(golden_id);
}

DocumentAnswer classify_document_answer(const std::string& output, int64_t golden_id, const std::vector<int64_t>& ids) {
  const std::string digits = leading_digits(output), golden = std::to_string(golden_id);
  if (!digits.empty() && digits == golden) return DocumentAnswer::Golden;
  // Ids are written without leading zeros and have at most three digits (0..999).
  if (digits.empty() || digits.size() > 3 || (digits.size() > 1 && digits[0] == '0')) return DocumentAnswer::NoDocumentId;
  if (std::find(ids.begin(), ids.end(), std::stoll(digits)) != ids.end()) return DocumentAnswer::OtherDocument;
  return golden.compare(0, digits.size(), digits) == 0 ? DocumentAnswer::GoldenCutShort : DocumentAnswer::NoDocumentId;
}

}  // namespace memmamba::eval
