#include "model/eval/documents_eval.h"

#include <torch/torch.h>

#include <chrono>

#include "model/distributed/shared_work.h"
#include "model/eval/result.h"

namespace memmamba::eval {

Json run_document_grid(const MemMambaModel& model, const Tokenizer& tokenizer, const DocumentRetrievalGenerator& generator,
                       const DocumentGridOptions& options, const std::function<bool(int64_t, int64_t)>& progress) {
  if (options.samples < 1) throw std::invalid_argument("documents: at least one sample per noise level");
  const int64_t total = static_cast<int64_t>(options.noise_levels.size()) * options.samples;
  const std::vector<std::string> records = share_units(
      options.world, "documents", total,
      [&](int64_t unit) {
        const int64_t noise = options.noise_levels[static_cast<size_t>(unit / options.samples)];
        const int64_t s = unit % options.samples;
        const auto t0 = std::chrono::steady_clock::now();
        const DocumentCase c = generator.make(noise, options.seed * 1000003 + static_cast<uint64_t>(s));
        const Encoding enc = tokenizer.encode(c.prompt);
        const std::vector<int64_t> prompt(enc.ids.begin(), enc.ids.end());
        const std::vector<int64_t> out = generate_greedy(model, prompt, options.max_new_tokens, options.run);
        const std::string answer = tokenizer.decode(std::vector<int32_t>(out.begin(), out.end()));
        Json r = Json::object();
        r["noise_documents"] = noise;
        r["sample"] = s;
        r["golden_id"] = c.golden_id;
        r["golden_index"] = c.golden_index;
        r["question"] = c.question;
        r["fact"] = c.fact;
        r["prompt_tokens"] = static_cast<int64_t>(prompt.size());
        r["answer"] = answer;
        r["hit"] = document_answer_correct(answer, c.golden_id);
        r["answered"] = document_answer_name(classify_document_answer(answer, c.golden_id, c.ids));
        r["seconds"] = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
        return r.dump();
      },
      progress);
  if (static_cast<int64_t>(records.size()) != total) return Json();  // another rank's share: rank 0 writes the result
  Json cases = Json::array(), levels = Json::array();
  for (size_t level_index = 0; level_index < options.noise_levels.size(); ++level_index) {
    int64_t hits = 0;
    DocumentMisses misses;
    for (int64_t s = 0; s < options.samples; ++s) {
      Json r = Json::parse(records[level_index * static_cast<size_t>(options.samples) + static_cast<size_t>(s)]);
      hits += r.at("hit").as_bool();
      misses.count(r.at("answered").as_string());
      cases.push_back(std::move(r));
    }
    Json level = Json::object();
    level["noise_documents"] = options.noise_levels[level_index];
    level["samples"] = options.samples;
    level["exact_match"] = static_cast<double>(hits) / static_cast<double>(options.samples);
    // How the misses went wrong: a wrong document read, the right one stopped short, or the
    // answer's form lost.
    level["other_document"] = misses.other_document;
    level["golden_cut_short"] = misses.golden_cut_short;
    level["no_document_id"] = misses.no_document_id;
    levels.push_back(level);
  }
  Json out = result_header("noisy_document_retrieval", model, options.meta, options.run.memory);
  out["note"] = "built from book paragraphs with an inserted fact (SQuAD is not available)";
  out["seed"] = static_cast<int64_t>(options.seed);
  out["levels"] = levels;
  out["cases"] = cases;
  return out;
}

}  // namespace memmamba::eval
