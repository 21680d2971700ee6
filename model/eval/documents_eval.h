// Runs noisy multi-document retrieval cases through the model (greedy answer in step mode).
#pragma once
#include <functional>
#include <vector>

#include "model/distributed/world.h"
#include "model/eval/documents.h"
#include "model/json.h"
#include "model/memmamba.h"
#include "model/tokenizer.h"
#include "model/trace.h"

namespace memmamba::eval {

struct DocumentGridOptions {
  std::vector<int64_t> noise_levels{10, 20, 120, 160, 200};
  int64_t samples = 10;
  uint64_t seed = 0;
  int64_t max_new_tokens = 4;
  int32_t attention_topk = 8;  // notes kept per answer read in the records
  RunOptions run;
  Json meta = Json::object();
  // Spread the cases over this world's ranks (null: all here); only rank 0 gets the result.
  World* world = nullptr;
};

// What each answer token's read weighs, per layer (the prompt's last token predicts the first
// answer token): the summed weight on notes of each DocumentRegion, and the note weighed most.
// A note that holds several tokens counts under its most telling one's region.
Json document_answer_reads(const Trace& trace, const std::vector<TokenRegion>& regions, int64_t prompt_tokens,
                           int64_t answer_tokens);

// Runs every (noise level, sample) case; each record says what the answer named and what its
// reads weighed, and each level the mean weight per layer on each region at the first answer token.
Json run_document_grid(const MemMambaModel& model, const Tokenizer& tokenizer, const DocumentRetrievalGenerator& generator,
                       const DocumentGridOptions& options,
                       const std::function<bool(int64_t done, int64_t total)>& progress = {});  // other ranks: null

}  // namespace memmamba::eval
