// The header every evaluation result file starts with: which evaluation, which model
// (checkpoint identity in `meta`), its config, the device and the memory settings.
#pragma once
#include <string>

#include "model/json.h"
#include "model/memmamba.h"

namespace memmamba::eval {

inline Json result_header(const std::string& evaluation, const MemMambaModel& model, const Json& meta,
                          const MemorySettings& memory) {
  Json out = Json::object();
  out["evaluation"] = evaluation;
  out["meta"] = meta;
  out["config"] = model.config().to_json();
  out["device"] = model.device().str();
  out["settings"] = memory.to_json(model.config().memory);
  return out;
}

}  // namespace memmamba::eval
