// A trace: metadata, per-token arrays, notes, pool events, attention rows, retention;
// an accepted trace must then replay and answer the views' queries without faults.
#include <algorithm>

#include "model/trace.h"
#include "tests/fuzz/fuzz_common.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  return refusal_is_fine([&] {
    const memmamba::Trace t = memmamba::Trace::parse(bytes_of(data, size), "fuzz");
    const memmamba::PoolReplay replay(t, 4);
    // Unsigned: a checksum of values the input chooses must wrap, not overflow.
    volatile uint64_t sum = t.memory_bytes();
    for (int32_t l = 0; l < static_cast<int32_t>(t.layers.size()); ++l) {
      for (int64_t p : {int64_t{0}, t.length() / 2, t.length()}) {
        for (int64_t n : replay.pool_at(l, p)) sum = sum + static_cast<uint64_t>(n);
        for (int64_t n : t.pool_at(l, p)) sum = sum + static_cast<uint64_t>(n);
      }
      const memmamba::AttentionRows& rows = t.layers[l].token_attention;
      for (size_t r = 0; r < rows.rows(); ++r)
        for (int64_t e = rows.offset[r]; e < rows.offset[r + 1]; ++e)
          sum = sum + static_cast<uint64_t>(t.notes[static_cast<size_t>(rows.note[e])].layer + rows.slot[e]);
      if (t.length() > 0) sum = sum + static_cast<uint64_t>(rows.find(t.length() - 1));
    }
    for (const memmamba::NoteInfo& n : t.notes)
      for (int64_t s : n.sources) sum = sum + static_cast<uint64_t>(t.tokens[static_cast<size_t>(s)]);
    for (const memmamba::PoolEvent& e : t.events) sum = sum + static_cast<uint64_t>(t.notes[static_cast<size_t>(e.note)].local_id);
  });
}
