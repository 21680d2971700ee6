#include "model/checkpoint.h"

#include <torch/torch.h>

#include <cstdio>
#include <set>

#include "model/file_io.h"

namespace memmamba {

void save_checkpoint(const std::string& path, const ModelConfig& config, const Weights& weights, DType storage,
                     const std::map<std::string, std::string>& extra) {
  torch::ScalarType st;
  switch (storage) {
    case DType::F32: st = torch::kFloat32; break;
    case DType::BF16: st = torch::kBFloat16; break;
    case DType::F16: st = torch::kFloat16; break;
    default: throw std::invalid_argument("checkpoints are stored as F32, BF16 or F16");
  }
  SafetensorsWriter w;
  for (const auto& [k, v] : extra) w.set_metadata(k, v);
  w.set_metadata("format", "memmamba-checkpoint");
  w.set_metadata("config", config.to_json().dump());
  for (const ParamSpec& spec : parameter_specs(config)) {
    auto t = weights[spec.name].detach().to(torch::kCPU).to(st).contiguous();
    w.add(spec.name, storage, spec.shape, t.data_ptr(), static_cast<uint64_t>(t.numel()) * t.element_size());
  }
  w.write(path);
}

Checkpoint parse_checkpoint(std::string bytes, const std::string& origin) {
  SafetensorsFile f = SafetensorsFile::parse(std::move(bytes), origin);
  auto fail = [&](const std::string& msg) { return FormatError(origin + ": " + msg); };
  const auto& meta = f.metadata();
  auto fmt = meta.find("format");
  if (fmt != meta.end() && fmt->second == "memmamba-trace") throw fail("this is a trace, not a checkpoint");
  auto cfg = meta.find("config");
  if (cfg == meta.end()) throw fail("no model config in the metadata (not a MemMamba checkpoint?)");
  Checkpoint ck;
  try {
    ck.config = ModelConfig::from_json(Json::parse(cfg->second));
  } catch (const std::exception& e) {
    throw fail(std::string("bad config in the metadata: ") + e.what());
  }
  for (const auto& [k, v] : meta)
    if (k != "config" && k != "format") ck.metadata[k] = v;

  std::set<std::string> expected;
  for (const ParamSpec& spec : parameter_specs(ck.config)) {
    expected.insert(spec.name);
    if (!f.has(spec.name)) throw fail("missing tensor \"" + spec.name + "\" that the config requires");
    const TensorView& v = f.tensors().at(spec.name);
    if (v.shape != spec.shape) {
      auto shape_str = [](const std::vector<int64_t>& s) {
        std::string r = "[";
        for (size_t i = 0; i < s.size(); ++i) r += (i ? ", " : "") + std::to_string(s[i]);
        return r + "]";
      };
      throw fail("tensor \"" + spec.name + "\" has shape " + shape_str(v.shape) + " but the config needs " +
                 shape_str(spec.shape));
    }
    torch::ScalarType st;
    switch (v.dtype) {
      case DType::F32: st = torch::kFloat32; break;
      case DType::BF16: st = torch::kBFloat16; break;
      case DType::F16: st = torch::kFloat16; break;
      default:
        throw fail("tensor \"" + spec.name + "\" has dtype " + dtype_name(v.dtype) + "; weights must be F32, BF16 or F16");
    }
    auto t = torch::from_blob(const_cast<uint8_t*>(v.data), spec.shape, st).to(torch::kFloat32).clone();
    if (!torch::isfinite(t).all().item<bool>())
      throw fail("tensor \"" + spec.name + "\" holds NaN or infinite values");
    ck.weights.set(spec.name, t);
  }
  for (const auto& [name, view] : f.tensors())
    if (!expected.count(name)) throw fail("unexpected tensor \"" + name + "\" (the config does not use it)");
  return ck;
}

Checkpoint load_checkpoint(const std::string& path) { return parse_checkpoint(read_file(path, uint64_t{1} << 34), path); }

std::string file_hash(const std::string& path) {
  std::FILE* f = std::fopen(path.c_str(), "rb");
  if (!f) throw FileError("cannot open " + path);
  uint64_t h = 1469598103934665603ull;
  unsigned char buf[1 << 16];
  size_t n;
  while ((n = std::fread(buf, 1, sizeof buf, f)) > 0)
    for (size_t i = 0; i < n; ++i) h = (h ^ buf[i]) * 1099511628211ull;
  std::fclose(f);
  char out[17];
  std::snprintf(out, sizeof out, "%016llx", static_cast<unsigned long long>(h));
  return out;
}

}  // namespace memmamba
