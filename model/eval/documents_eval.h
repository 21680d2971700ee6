// Runs noisy multi-document retrieval cases through the model (greedy answer in step mode).
#pragma once
#include <functional>
#include <vector>

#include "model/distributed/world.h"
#include "model/eval/documents.h"
#include "model/json.h"
#include "model/memmamba.h"
#include "model/tokenizer.h"

namespace memmamba::eval {

struct DocumentGridOptions {
  std::vector<int64_t> noise_levels{10, 20, 120, 160, 200};
  int64_t samples = 10;
  uint64_t seed = 0;
  int64_t max_new_tokens = 4;
  RunOptions run;
  Json meta = Json::object();
  // Spread the cases over this world's ranks (null: all here); only rank 0 gets the result.
  World* world = nullptr;
};

Json run_document_grid(const MemMambaModel& model, const Tokenizer& tokenizer, const DocumentRetrievalGenerator& generator,
                       const DocumentGridOptions& options,
                       const std::function<bool(int64_t done, int64_t total)>& progress = {});  // other ranks: null

}  // namespace memmamba::eval
