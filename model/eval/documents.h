// Noisy multi-document retrieval in DeciMamba's "squad_retrieve" format
// (docs/eval-protocols.md), built from book paragraphs because SQuAD is not available:
// one paragraph gets an inserted fact that answers the question; n noise paragraphs
// around it; the model must name the golden document's id.
#pragma once
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

namespace memmamba::eval {

// What opens every document's header, "<|Document 120|> ", and ends the prompt before the answer.
inline constexpr const char* kDocumentHeader = "<|Document ";

struct DocumentCase {
  int64_t noise_documents = 0;
  std::string question;
  std::string fact;            // the sentence inserted into the golden paragraph
  int64_t golden_id = 0;       // 0..999
  int64_t golden_index = 0;    // position of the golden document among all documents
  std::vector<int64_t> ids;    // every document's id, in order
  std::string prompt;          // ends with " <|Answer|> <|Document "
  // Where the prompt's parts lie, as [begin, end) byte ranges: each document's id digits in
  // its header (in document order), each repeated question with its "<|Query|>" mark, and the
  // inserted fact. What is in none of them is a header's or the answer's marks, or book text.
  std::vector<std::pair<size_t, size_t>> id_spans, query_spans;
  std::pair<size_t, size_t> fact_span{0, 0};
};

// What a prompt token of a documents case is part of: what a read at the answer can find.
enum class DocumentRegion : uint8_t { GoldenId, OtherId, Fact, Query, Marks, Text };
inline constexpr int kDocumentRegions = 6;
// "golden id", "other id", "fact", "query", "marks" or "text", as result files record it.
inline const char* document_region_name(DocumentRegion region) {
  switch (region) {
    case DocumentRegion::GoldenId: return "golden id";
    case DocumentRegion::OtherId: return "other id";
    case DocumentRegion::Fact: return "fact";
    case DocumentRegion::Query: return "query";
    case DocumentRegion::Marks: return "marks";
    case DocumentRegion::Text: break;
  }
  return "text";
}
// Each token's region and, for an id token, its document's index and where in the id it starts, from the prompt's
// token byte ranges. A token that straddles two parts takes the first of them in the enum's order.
struct TokenRegion {
  DocumentRegion region = DocumentRegion::Text;
  int64_t document = -1;
  int64_t id_char = -1;  // an id token: the id's character it starts at (0 = its first digit)
};
std::vector<TokenRegion> document_token_regions(const DocumentCase& c, const std::vector<int64_t>& begin,
                                                const std::vector<int64_t>& end);

// Paragraphs separated by blank lines, whitespace collapsed, with at least `min_words` words.
std::vector<std::string> split_paragraphs(const std::string& text, int64_t min_words = 30);

class DocumentRetrievalGenerator {
 public:
  explicit DocumentRetrievalGenerator(std::vector<std::string> paragraphs);
  // Deterministic in (noise_documents, seed); document ids are distinct.
  DocumentCase make(int64_t noise_documents, uint64_t seed) const;

 private:
  std::vector<std::string> paragraphs_;
};

// Exact match: the output starts (after spaces) with the golden id followed by "|>" or
// by something that is not a digit.
bool document_answer_correct(const std::string& output, int64_t golden_id);

// What an answer names: the golden document, another document of the case (an id was read, the
// wrong one), the golden id's first digits and no more (the answer stopped too soon), or no
// document's id at all (the answer's form was lost: words, a full stop, a number no document has).
enum class DocumentAnswer { Golden, OtherDocument, GoldenCutShort, NoDocumentId };
DocumentAnswer classify_document_answer(const std::string& output, int64_t golden_id, const std::vector<int64_t>& ids);
// "golden", "other document", "golden cut short" or "no document id", as result files record it (inline: the
// Explorer's views read result files without the evaluation code).
inline const char* document_answer_name(DocumentAnswer answer) {
  switch (answer) {
    case DocumentAnswer::Golden: return "golden";
    case DocumentAnswer::OtherDocument: return "other document";
    case DocumentAnswer::GoldenCutShort: return "golden cut short";
    case DocumentAnswer::NoDocumentId: break;
  }
  return "no document id";
}

// A result's misses counted by what they named, from the `answered` names its cases record.
struct DocumentMisses {
  int64_t other_document = 0, golden_cut_short = 0, no_document_id = 0;
  void count(const std::string& answered) {
    other_document += answered == document_answer_name(DocumentAnswer::OtherDocument);
    golden_cut_short += answered == document_answer_name(DocumentAnswer::GoldenCutShort);
    no_document_id += answered == document_answer_name(DocumentAnswer::NoDocumentId);
  }
  int64_t named() const { return other_document + golden_cut_short + no_document_id; }
};

}  // namespace memmamba::eval
