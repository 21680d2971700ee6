// A model config as JSON text: the JSON parser, then field names, types and ranges.
#include "model/config.h"
#include "model/json.h"
#include "tests/fuzz/fuzz_common.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  return refusal_is_fine([&] {
    const memmamba::Json j = memmamba::Json::parse(bytes_of(data, size));
    const memmamba::ModelConfig c = memmamba::ModelConfig::from_json(j);
    c.validate();
    // What is accepted round-trips.
    if (!(memmamba::ModelConfig::from_json(memmamba::Json::parse(c.to_json().dump())) == c)) __builtin_trap();
  });
}
