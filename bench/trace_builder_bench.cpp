// How fast the trace builder takes a traced chunk's attention rows in, without the model:
// `reads` reads of `tokens` rows and `width` entries each (a 64k GPU chunk of the bundled
// model: 12 reads, 8 entries), into fresh memory, into memory written before, and into the
// reservation of TraceBuilder::expect_tokens after `lead` ms (the model's compute before the
// first rows arrive). Prints milliseconds and page faults per variant.
// Usage: trace_builder_bench [--tokens N] [--width K] [--reads R] [--rounds N] [--lead MS]
#include <sys/resource.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <stdexcept>
#include <string>
#include <thread>

#include "model/config.h"
#include "model/trace_builder.h"

using namespace memmamba;

namespace {

double seconds_now() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

long minor_faults() {
  rusage r{};
  getrusage(RUSAGE_SELF, &r);
  return r.ru_minflt;
}

}  // namespace

int main(int argc, char** argv) {
  int64_t tokens = 65536, width = 8, reads = 12, rounds = 4, lead_ms = 40;
  for (int i = 1; i < argc; ++i) {
    const std::string flag = argv[i];
    if (i + 1 >= argc) {
      std::fprintf(stderr, "%s needs a value\n", flag.c_str());
      return 2;
    }
    int64_t value = 0;
    try {
      value = std::stoll(argv[++i]);
    } catch (const std::exception&) {
      std::fprintf(stderr, "%s needs a number, not '%s'\n", flag.c_str(), argv[i]);
      return 2;
    }
    if (value < (flag == "--lead" ? 0 : 1)) {
      std::fprintf(stderr, "%s out of range\n", flag.c_str());
      return 2;
    }
    if (flag == "--tokens") tokens = value;
    else if (flag == "--width") width = value;
    else if (flag == "--reads") reads = value;
    else if (flag == "--rounds") rounds = value;
    else if (flag == "--lead") lead_ms = value;
    else {
      std::fprintf(stderr, "unknown flag %s\n", flag.c_str());
      return 2;
    }
  }
  ModelConfig config;  // the bundled model's shape: 8 layers, 50 slots
  config.n_layers = 8;
  config.pool_slots = 50;
  TraceOptions options;
  options.attention_topk = static_cast<int32_t>(width);
  const size_t entries = static_cast<size_t>(tokens * width);
  std::vector<int32_t> column(entries), bank(entries);
  std::vector<float> weight(entries);
  std::mt19937 rng(7);
  for (size_t e = 0; e < entries; ++e) {
    column[e] = rng() % 8 == 0 ? -1 : static_cast<int32_t>(rng() % 50);  // some padding, as a run has
    bank[e] = static_cast<int32_t>(rng() % 60);
    weight[e] = static_cast<float>(rng() % 1000) / 1000.f;
  }
  AttentionRowsIn rows;
  rows.width = width;
  rows.column = column.data();
  rows.bank = bank.data();
  rows.weight = weight.data();
  for (int32_t b = 0; b < 60; ++b) rows.bank_note.push_back(b % 10);
  for (int32_t j = 0; j < 50; ++j) {
    rows.column_layer.push_back(0);
    rows.column_slot.push_back(j);
  }
  for (int64_t t = 0; t < tokens; ++t) rows.positions.push_back(t);
  auto new_builder = [&] {
    auto b = std::make_unique<TraceBuilder>(config, options);
    std::vector<NoteMade> notes(10);
    for (size_t i = 0; i < notes.size(); ++i) notes[i].note_id = static_cast<int64_t>(i);
    for (int32_t l = 0; l < config.n_layers; ++l) b->notes_made(l, notes);
    return b;
  };
  auto take_rows = [&](TraceBuilder& b) {
    const long faults = minor_faults();
    const double t0 = seconds_now();
    for (int64_t r = 0; r < reads; ++r)
      b.attention_rows(static_cast<int32_t>(r % config.n_layers), r >= config.n_layers, rows);
    return std::make_pair((seconds_now() - t0) * 1e3, minor_faults() - faults);
  };
  std::printf("%lld reads of %lld rows x %lld entries\n", static_cast<long long>(reads), static_cast<long long>(tokens),
              static_cast<long long>(width));
  std::printf("round  fresh ms  faults  written-before ms  faults  expected ms  faults\n");
  for (int64_t round = 1; round <= rounds; ++round) {
    auto fresh_builder = new_builder();
    const auto fresh = take_rows(*fresh_builder);
    for (LayerTrace& l : fresh_builder->trace().layers)
      for (AttentionRows* a : {&l.token_attention, &l.layer_attention}) {
        a->token.clear();
        a->offset.clear();
        a->slot.clear();
        a->layer.clear();
        a->note.clear();
        a->weight.clear();
      }
    const auto reused = take_rows(*fresh_builder);
    fresh_builder.reset();
    auto expecting = new_builder();
    expecting->expect_tokens(tokens);
    std::this_thread::sleep_for(std::chrono::milliseconds(lead_ms));
    const auto expected = take_rows(*expecting);
    std::printf("%5lld  %8.1f  %6ld  %17.1f  %6ld  %11.1f  %6ld\n", static_cast<long long>(round), fresh.first,
                fresh.second, reused.first, reused.second, expected.first, expected.second);
  }
  return 0;
}
