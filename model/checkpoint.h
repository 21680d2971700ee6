// Checkpoints in safetensors: the config in the metadata, every tensor checked
// against it on load (name, dtype, shape, finite values).
#pragma once
#include <map>
#include <string>

#include "model/config.h"
#include "model/safetensors.h"
#include "model/weights.h"

namespace memmamba {

struct Checkpoint {
  ModelConfig config;
  Weights weights;                              // fp32, on the CPU
  std::map<std::string, std::string> metadata;  // everything else the file's metadata holds
};

// storage: F32, BF16 or F16.
void save_checkpoint(const std::string& path, const ModelConfig& config, const Weights& weights,
                     DType storage = DType::F32, const std::map<std::string, std::string>& extra = {});
Checkpoint load_checkpoint(const std::string& path);
Checkpoint parse_checkpoint(std::string bytes, const std::string& origin);

// A short content hash of a file (FNV-1a 64, hex), recorded in results.
std::string file_hash(const std::string& path);

}  // namespace memmamba
