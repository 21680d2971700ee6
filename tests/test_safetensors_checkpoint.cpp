#include <torch/torch.h>

#include <QtTest/QtTest>
#include <cstring>

#include "model/checkpoint.h"
#include "model/file_io.h"
#include "model/json.h"
#include "model/safetensors.h"
#include "test_helpers.h"

using namespace memmamba;

namespace {
std::string with_header(const std::string& header, const std::string& data) {
  std::string out(8, '\0');
  uint64_t n = header.size();
  std::memcpy(out.data(), &n, 8);
  return out + header + data;
}

// Runs fn, expects a FormatError whose message contains `needle`.
template <typename Fn>
void expect_error(Fn fn, const std::string& needle) {
  try {
    fn();
    QFAIL(("no error; expected one mentioning: " + needle).c_str());
  } catch (const FormatError& e) {
    const std::string msg = e.what();
    if (msg.find(needle) == std::string::npos) QFAIL(("message \"" + msg + "\" lacks \"" + needle + "\"").c_str());
  }
}
}  // namespace

class TestSafetensorsCheckpoint : public QObject {
  Q_OBJECT
  QTemporaryDir dir_;
  std::string path(const char* name) { return dir_.filePath(name).toStdString(); }

 private Q_SLOTS:
  void containerRoundTrip() {
    SafetensorsWriter w;
    w.set_metadata("k", "v");
    std::vector<float> f{1.f, -2.5f, 3.25f};
    std::vector<int64_t> i{7, -8};
    w.add_vector("floats", DType::F32, f);
    w.add_vector("ints", DType::I64, i);
    w.write(path("a.safetensors"));
    SafetensorsFile r = SafetensorsFile::load(path("a.safetensors"));
    QCOMPARE(r.metadata().at("k"), std::string("v"));
    QCOMPARE(r.read_vector<float>("floats", DType::F32), f);
    QCOMPARE(r.read_vector<int64_t>("ints", DType::I64), i);
    expect_error([&] { r.get("floats", DType::I64); }, "dtype F32");
    expect_error([&] { r.get("nothing", DType::F32); }, "missing tensor");
  }

  void checkpointRoundTripIsExact() {
    ModelConfig c = testing::tiny_config();
    Weights w = Weights::random(c, 3);
    save_checkpoint(path("m.safetensors"), c, w, DType::F32, {{"steps", "12"}});
    Checkpoint ck = load_checkpoint(path("m.safetensors"));
    QVERIFY(ck.config == c);
    QCOMPARE(ck.metadata.at("steps"), std::string("12"));
    for (const ParamSpec& s : parameter_specs(c)) QVERIFY(torch::equal(ck.weights[s.name], w[s.name]));
    // bf16 storage: values come back rounded to bf16.
    save_checkpoint(path("m16.safetensors"), c, w, DType::BF16);
    Checkpoint ck16 = load_checkpoint(path("m16.safetensors"));
    const auto& a = w["embedding.weight"];
    QVERIFY(torch::equal(ck16.weights["embedding.weight"], a.to(torch::kBFloat16).to(torch::kFloat32)));
    QVERIFY(file_size_checked(path("m16.safetensors")) < file_size_checked(path("m.safetensors")) * 0.6);
  }

  void refusesTruncatedFiles() {
    ModelConfig c = testing::tiny_config();
    save_checkpoint(path("t.safetensors"), c, Weights::random(c, 1));
    std::string bytes = read_file(path("t.safetensors"));
    expect_error([&] { parse_checkpoint(bytes.substr(0, bytes.size() / 2), "half"); }, "past the end");
    expect_error([&] { parse_checkpoint(bytes.substr(0, 5), "five"); }, "truncated");
    expect_error([&] { parse_checkpoint(bytes.substr(0, 40), "forty"); }, "truncated");
  }

  void refusesHostileHeaders() {
    std::string huge(8, '\0');
    uint64_t n = uint64_t{1} << 40;
    std::memcpy(huge.data(), &n, 8);
    expect_error([&] { SafetensorsFile::parse(huge + "{}", "huge"); }, "header too large");
    expect_error([&] { SafetensorsFile::parse(with_header("{not json", ""), "garbage"); }, "not valid JSON");
    expect_error([&] { SafetensorsFile::parse(with_header("[1]", ""), "array"); }, "not a JSON object");
    const std::string data(16, '\0');
    expect_error(
        [&] {
          SafetensorsFile::parse(with_header("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
                                             "\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[4,12]}}", data), "ov");
        },
        "overlap");
    expect_error(
        [&] { SafetensorsFile::parse(with_header("{\"a\":{\"dtype\":\"F32\",\"shape\":[8],\"data_offsets\":[0,32]}}", data), "oob"); },
        "past the end");
    expect_error(
        [&] { SafetensorsFile::parse(with_header("{\"a\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[0,8]}}", data), "sz"); },
        "need 12");
    expect_error(
        [&] { SafetensorsFile::parse(with_header("{\"a\":{\"dtype\":\"F32\",\"shape\":[-1],\"data_offsets\":[0,8]}}", data), "neg"); },
        "negative");
    expect_error(
        [&] { SafetensorsFile::parse(with_header("{\"a\":{\"dtype\":\"Q4\",\"shape\":[2],\"data_offsets\":[0,8]}}", data), "dt"); },
        "unknown dtype");
    expect_error(
        [&] { SafetensorsFile::parse(with_header("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[8,0]}}", data), "rev"); },
        "invalid");
    expect_error(
        [&] {
          SafetensorsFile::parse(with_header("{\"a\":{\"dtype\":\"F32\",\"shape\":[4294967296,4294967296],\"data_offsets\":[0,8]}}", data), "big");
        },
        "too large");
  }

  void refusesWeightsThatDoNotFitTheConfig() {
    ModelConfig c = testing::tiny_config();
    Weights good = Weights::random(c, 1);
    auto write_with = [&](const std::string& name, const std::function<void(SafetensorsWriter&, const ParamSpec&)>& odd) {
      SafetensorsWriter w;
      w.set_metadata("config", c.to_json().dump());
      for (const ParamSpec& s : parameter_specs(c)) {
        if (s.name == name) { odd(w, s); continue; }
        auto t = good[s.name].contiguous();
        w.add(s.name, DType::F32, s.shape, t.data_ptr(), t.numel() * 4);
      }
      return w.serialize();
    };
    const std::string target = "layers.1.mixer.in_proj.weight";
    auto wrong_shape = write_with(target, [&](SafetensorsWriter& w, const ParamSpec& s) {
      std::vector<float> v(static_cast<size_t>(good[s.name].numel()), 0.f);
      w.add(s.name, DType::F32, {s.shape[1], s.shape[0]}, v.data(), v.size() * 4);
    });
    expect_error([&] { parse_checkpoint(wrong_shape, "shape"); }, "has shape [16, 64] but the config needs [64, 16]");
    auto with_nan = write_with(target, [&](SafetensorsWriter& w, const ParamSpec& s) {
      auto t = good[s.name].clone();
      t.view({-1})[5] = std::nanf("");
      w.add(s.name, DType::F32, s.shape, t.data_ptr(), t.numel() * 4);
    });
    expect_error([&] { parse_checkpoint(with_nan, "nan"); }, "NaN");
    auto with_inf = write_with(target, [&](SafetensorsWriter& w, const ParamSpec& s) {
      auto t = good[s.name].clone();
      t.view({-1})[0] = INFINITY;
      w.add(s.name, DType::F32, s.shape, t.data_ptr(), t.numel() * 4);
    });
    expect_error([&] { parse_checkpoint(with_inf, "inf"); }, "infinite");
    auto wrong_dtype = write_with(target, [&](SafetensorsWriter& w, const ParamSpec& s) {
      std::vector<int32_t> v(static_cast<size_t>(good[s.name].numel()), 0);
      w.add(s.name, DType::I32, s.shape, v.data(), v.size() * 4);
    });
    expect_error([&] { parse_checkpoint(wrong_dtype, "dtype"); }, "dtype I32");
    auto missing = write_with(target, [](SafetensorsWriter&, const ParamSpec&) {});
    expect_error([&] { parse_checkpoint(missing, "missing"); }, "missing tensor \"" + target + "\"");
    auto extra = write_with(target, [&](SafetensorsWriter& w, const ParamSpec& s) {
      auto t = good[s.name].contiguous();
      w.add(s.name, DType::F32, s.shape, t.data_ptr(), t.numel() * 4);
      w.add("stray.weight", DType::F32, {1}, t.data_ptr(), 4);
    });
    expect_error([&] { parse_checkpoint(extra, "extra"); }, "unexpected tensor \"stray.weight\"");
    // A config that does not match the tensors (memory switched off): the memory weights are extra.
    SafetensorsFile good_file = SafetensorsFile::parse(write_with("", nullptr), "ok");
    QVERIFY(good_file.has(target));
    ModelConfig mismatched = c;
    mismatched.d_model = 32;
    SafetensorsWriter w;
    w.set_metadata("config", mismatched.to_json().dump());
    for (const ParamSpec& s : parameter_specs(c)) {
      auto t = good[s.name].contiguous();
      w.add(s.name, DType::F32, s.shape, t.data_ptr(), t.numel() * 4);
    }
    expect_error([&] { parse_checkpoint(w.serialize(), "mismatch"); }, "but the config needs");
    SafetensorsWriter no_config;
    expect_error([&] { parse_checkpoint(no_config.serialize(), "noconfig"); }, "no model config");
    SafetensorsWriter bad_config;
    bad_config.set_metadata("config", "{\"d_model\": 0}");
    expect_error([&] { parse_checkpoint(bad_config.serialize(), "badconfig"); }, "bad config");
  }
};

QTEST_APPLESS_MAIN(TestSafetensorsCheckpoint)
#include "test_safetensors_checkpoint.moc"
