#include "model/eval/documents_eval.h"

#include <torch/torch.h>

#include <array>
#include <chrono>
#include <cmath>
#include <optional>

#include "model/distributed/shared_work.h"
#include "model/eval/result.h"
#include "model/trace_builder.h"

namespace memmamba::eval {

Json document_answer_reads(const Trace& trace, const std::vector<TokenRegion>& regions, int64_t prompt_tokens,
                           int64_t answer_tokens) {
  // A note's region: its most telling source's (the enum orders them), and that source's document.
  auto note_region = [&](const NoteInfo& note) {
    TokenRegion best;
    for (int64_t s : note.sources)
      if (s >= 0 && s < static_cast<int64_t>(regions.size()) &&
          static_cast<uint8_t>(regions[static_cast<size_t>(s)].region) < static_cast<uint8_t>(best.region))
        best = regions[static_cast<size_t>(s)];
    return best;
  };
  Json reads = Json::array();
  for (int32_t l = 0; l < static_cast<int32_t>(trace.layers.size()); ++l) {
    const AttentionRows& rows = trace.layers[static_cast<size_t>(l)].token_attention;
    for (int64_t a = 0; a < answer_tokens; ++a) {
      const int64_t row = rows.find(prompt_tokens - 1 + a);
      if (row < 0) continue;
      std::array<double, kDocumentRegions> weights{};
      TokenRegion top;
      double top_weight = -1;
      for (int64_t e = rows.offset[row]; e < rows.offset[row + 1]; ++e) {
        const TokenRegion region = note_region(trace.notes[static_cast<size_t>(rows.note[e])]);
        weights[static_cast<size_t>(region.region)] += rows.weight[e];
        if (rows.weight[e] > top_weight) {
          top_weight = rows.weight[e];
          top = region;
        }
      }
      Json read = Json::object();
      read["layer"] = static_cast<int64_t>(l);
      read["answer_token"] = a;
      // Four decimals: finer is noise, and a 40-sample result stays a few hundred KB.
      auto rounded = [](double w) { return std::round(w * 1e4) / 1e4; };
      Json w = Json::object();
      for (int region = 0; region < kDocumentRegions; ++region)
        w[document_region_name(static_cast<DocumentRegion>(region))] = rounded(weights[static_cast<size_t>(region)]);
      read["weights"] = w;
      if (top_weight >= 0) {
        read["top_region"] = document_region_name(top.region);
        read["top_document"] = top.document;  // the document whose id it holds, else -1
        read["top_id_char"] = top.id_char;    // and where in that id: 0 is its first digit
        read["top_weight"] = rounded(top_weight);
      }
      reads.push_back(read);
    }
  }
  return reads;
}

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
        const int64_t T = static_cast<int64_t>(prompt.size());
        // The answer's reads are traced where there is a memory to read.
        std::optional<TraceBuilder> builder;
        RunOptions run = options.run;
        if (model.config().memory && options.run.memory.enabled) {
          TraceOptions trace_options;
          trace_options.attention_topk = options.attention_topk;
          trace_options.detail_begin = T - 1;  // attention rows only where the answer is produced
          run.observer = &builder.emplace(model.config(), trace_options);
        }
        const std::vector<int64_t> out = generate_greedy(model, prompt, options.max_new_tokens, run);
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
        Json pieces = Json::array();
        for (int64_t id : out) pieces.push_back(tokenizer.piece(static_cast<int32_t>(id)));  // "▁" marks a space
        r["answer_pieces"] = pieces;
        r["hit"] = document_answer_correct(answer, c.golden_id);
        r["answered"] = document_answer_name(classify_document_answer(answer, c.golden_id, c.ids));
        if (builder)
          r["reads"] = document_answer_reads(builder->finish(), document_token_regions(c, enc.begin, enc.end), T,
                                             static_cast<int64_t>(out.size()));
        r["seconds"] = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
        return r.dump();
      },
      progress);
  if (static_cast<int64_t>(records.size()) != total) return Json();  // another rank's share: rank 0 writes the result
  Json cases = Json::array(), levels = Json::array();
  for (size_t level_index = 0; level_index < options.noise_levels.size(); ++level_index) {
    int64_t hits = 0;
    DocumentMisses misses;
    // Per layer, the first answer token's summed weight on each region, over the level's cases.
    std::vector<std::array<double, kDocumentRegions>> first_read;
    for (int64_t s = 0; s < options.samples; ++s) {
      Json r = Json::parse(records[level_index * static_cast<size_t>(options.samples) + static_cast<size_t>(s)]);
      hits += r.at("hit").as_bool();
      misses.count(r.at("answered").as_string());
      if (r.contains("reads"))
        for (const Json& read : r.at("reads").as_array()) {
          if (read.at("answer_token").as_int() != 0) continue;
          const size_t layer = static_cast<size_t>(read.at("layer").as_int());
          if (first_read.size() <= layer) first_read.resize(layer + 1, std::array<double, kDocumentRegions>{});
          for (int region = 0; region < kDocumentRegions; ++region)
            first_read[layer][static_cast<size_t>(region)] +=
                read.at("weights").at(document_region_name(static_cast<DocumentRegion>(region))).as_double();
        }
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
    if (!first_read.empty()) {
      Json layers = Json::array();
      for (size_t layer = 0; layer < first_read.size(); ++layer) {
        Json weights = Json::object();
        for (int region = 0; region < kDocumentRegions; ++region)
          weights[document_region_name(static_cast<DocumentRegion>(region))] =
              first_read[layer][static_cast<size_t>(region)] / static_cast<double>(options.samples);
        layers.push_back(weights);
      }
      level["first_read_by_layer"] = layers;
    }
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
