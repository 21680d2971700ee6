// Reads the accuracy grid (length x depth) out of a `memmamba eval passkey` result, with
// every field checked: the app draws it and the fuzzer feeds it hostile files. Torch-free.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "model/eval/documents.h"
#include "model/json.h"

namespace memmamba::eval {

struct PasskeyGrid {
  std::vector<int64_t> lengths;               // ascending
  std::vector<double> depths;                 // ascending
  std::vector<std::vector<double>> accuracy;  // [length][depth], NaN where the grid has no cell
  // Mean share of the key's digits in place (partial credit); NaN where the file has none.
  std::vector<std::vector<double>> digit_accuracy;
  // What the cases were ("5-digit keys, wording 0", "4 facts, held-out wordings").
  std::string case_description;
  int64_t facts = 1;
  // A `memmamba eval docs` result: rows are noise-document counts (in `lengths`), columns the
  // third of the document list that held the golden document (document_position_bin in `depths`).
  bool documents = false;
  // The row of a length and the column of a depth (depths within 1e-9); -1 where the grid has none.
  int length_index(double length) const;
  int depth_index(double depth) const;
};

// A result's cases counted by what varied in them, for digging into failures: hits by the key's
// length (characters) and by wording, and how the misses' answers stand to their keys.
struct GridBreakdown {
  struct Count {
    int64_t value = 0;  // key length, or wording index (-1: composed from parts)
    int64_t hits = 0, cases = 0;
  };
  std::vector<Count> by_key_length, by_wording;  // ascending
  int64_t misses = 0, cut_short = 0, ran_on = 0;
  // Cases with labelled facts: hits where the asked fact is the first in the text and where it
  // is a later one (a read that takes the first value it noted scores only the former), and
  // misses that answer another fact's value (a value was read, the wrong one).
  Count asked_first, asked_later;
  int64_t other_fact_answers = 0;
  // Docs results (cases that record what they `answered`): the misses that named another
  // document, the golden id cut short, or no document.
  DocumentMisses document_misses;
  // Docs cases with reads: where the last layer's read, at the answer piece that writes the id's
  // first digit, weighed most: the golden id, another document's id (each with its hits), or neither.
  struct FirstDigitReads {
    int64_t golden = 0, golden_hits = 0, other = 0, other_hits = 0, elsewhere = 0;
    int64_t cases() const { return golden + other + elsewhere; }
  } first_digit_reads;
  // "Hits by key length: 3 2/2, 4 3/4 ... By wording: ... Of 16 misses, 4 are the key cut
  // short and 2 run on past it." and for facts "Hits with the asked fact first in the text: 9/12,
  // later in it: 2/12; 8 misses answer another fact's value." and for docs "Of 19 misses, 11
  // name another document, 0 cut the golden id short and 8 name no document. In the last layer
  // the answer's first digit was read from the golden id in 12 of 30 answers with a digit (9 hits)
  // and from another document's id in 17 (2 hits)." Parts with one
  // group only are left out; empty without cases.
  std::string describe() const;
};
// Reads the "cases" of a passkey, facts or docs result; records without a key (or a docs
// case's `answered`), answer or hit are skipped (parse_passkey_grid checks the cells a grid is drawn from).
GridBreakdown grid_breakdown(const Json& results);

// Bounds that keep a hostile file from asking for a huge matrix.
constexpr size_t kMaxGridLengths = 256, kMaxGridDepths = 256;
constexpr uint64_t kMaxGridFileBytes = 512ull << 20;

// The column of a document case: the centre of the third of its noise + 1 documents that holds
// the golden one (1/6, 1/2 or 5/6).
double document_position_bin(int64_t golden_index, int64_t noise_documents);
// Whether `results` is a `memmamba eval docs` result.
bool is_document_result(const Json& results);
// What a docs case's answer read in the deepest layer, answer token by answer token: "golden id
// digit 1, golden id digit 1, golden id digit 2" or "document 4's id digit 1, the fact", each
// after the piece it produced ("\"9\" ← golden id digit 1") where the case records its pieces.
// Empty where the case records no reads (a model without the memory, or an older result) or they
// are malformed.
std::string document_read_path(const Json& case_record);
// The document whose id the deepest layer's read weighed most at the answer piece that writes the
// first digit (-1: a note that is no id's), or -2 where the case has no reads, no digit in its
// answer or malformed records.
int64_t first_digit_read_document(const Json& case_record);

// Throws std::invalid_argument with a message for the user on anything malformed. Reads
// passkey and facts grids, and docs results (PasskeyGrid::documents).
PasskeyGrid parse_passkey_grid(const Json& results);
// Reads and parses a result file (size-checked first).
PasskeyGrid load_passkey_grid(const std::string& path, Json* results = nullptr);

}  // namespace memmamba::eval
