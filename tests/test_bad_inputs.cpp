// The bad-input catalogue: every kind of file or flag a user can hand the project, broken in
// the ways files get broken, must be refused with a message that names the problem, and the
// next good input must still work. Each case asserts a fragment of its message; the whole
// catalogue (case, message) is written to bad-inputs.md next to this test for the docs.
#include <torch/torch.h>

#include <QtTest/QtTest>

#include <sys/stat.h>
#include <unistd.h>

#include <cmath>
#include <fstream>
#include <functional>

#include "model/checkpoint.h"
#include "model/config.h"
#include "model/eval/passkey_grid.h"
#include "model/file_io.h"
#include "model/json.h"
#include "model/safetensors.h"
#include "model/selective_scan.h"
#include "model/book/book.h"
#include "model/memory/memory_edits.h"
#include "model/text_input.h"
#include "tests/test_helpers.h"
#include "model/tokenizer.h"
#include "model/trace.h"
#include "model/runtime.h"

using namespace memmamba;

namespace {

const std::string kCorpus = std::string(MEMMAMBA_SOURCE_DIR) + "/tests/fuzz/corpus/";
const std::string kGoodCheckpoint = kCorpus + "checkpoint/tiny.safetensors";
const std::string kGoodTokenizer = kCorpus + "tokenizer/tiny.model";
const std::string kGoodTrace = kCorpus + "trace/tiny.trace";

struct Outcome {
  bool refused = false;
  std::string message;
};

// Runs `body`; a refusal is any exception with a message (what the app shows).
Outcome attempt(const std::function<void()>& body) {
  try {
    body();
    return {false, {}};
  } catch (const std::exception& e) {
    return {true, e.what()};
  }
}

// Rewrites a safetensors file, letting `edit` change each tensor (return false to drop it)
// and `meta` change the metadata.
std::string rebuild(const std::string& path,
                    const std::function<bool(const std::string&, DType&, std::vector<int64_t>&, std::string&)>& edit,
                    const std::function<void(std::map<std::string, std::string>&)>& meta = {}) {
  const SafetensorsFile f = SafetensorsFile::load(path);
  SafetensorsWriter w;
  std::map<std::string, std::string> m = f.metadata();
  if (meta) meta(m);
  for (const auto& [k, v] : m) w.set_metadata(k, v);
  for (const auto& [name, view] : f.tensors()) {
    DType dtype = view.dtype;
    std::vector<int64_t> shape = view.shape;
    std::string data(reinterpret_cast<const char*>(view.data), view.nbytes);
    if (!edit(name, dtype, shape, data)) continue;
    w.add(name, dtype, shape, data.data(), data.size());
  }
  return w.serialize();
}

}  // namespace

class TestBadInputs : public QObject {
  Q_OBJECT
  QTemporaryDir dir_;
  QString catalogue_;
  int cases_ = 0;

  std::string path(const char* name) const { return dir_.filePath(QString::fromUtf8(name)).toStdString(); }
  std::string write(const char* name, const std::string& bytes) const {
    const std::string p = path(name);
    std::ofstream(p, std::ios::binary) << bytes;
    return p;
  }
  static std::string read(const std::string& p) { return read_file(p); }

  // One catalogue entry: the input must be refused with a message containing `fragment`.
  void refuse(const QString& kind, const QString& what, const std::function<void()>& body, const std::string& fragment) {
    const Outcome o = attempt(body);
    QVERIFY2(o.refused, qPrintable(kind + QStringLiteral(": ") + what + QStringLiteral(" was accepted")));
    QVERIFY2(o.message.find(fragment) != std::string::npos,
             qPrintable(kind + QStringLiteral(": ") + what + QStringLiteral(" said \"") + QString::fromStdString(o.message) +
                        QStringLiteral("\", expected \"") + QString::fromStdString(fragment) + QStringLiteral("\"")));
    record(kind, what, QString::fromStdString(o.message));
  }
  void record(const QString& kind, const QString& what, QString message) {
    message.replace(dir_.path() + QLatin1Char('/'), QString());
    message.replace(QString::fromStdString(kCorpus), QString());
    message.replace(QLatin1Char('|'), QStringLiteral("\\|"));
    message.replace(QLatin1Char('\n'), QLatin1Char(' '));
    catalogue_ += QStringLiteral("| %1 | %2 | %3 |\n").arg(kind, what, message.trimmed());
    ++cases_;
  }

  // A CLI case: exit status `code` and `fragment` on stderr.
  // `memmamba train` on the test's shards into a scratch folder, with `extra` flags.
  QStringList trainArgs(const QStringList& extra) {
    return QStringList{QStringLiteral("train"), QStringLiteral("--data"), dir_.path(), QStringLiteral("--out"),
                       QString::fromStdString(path("t"))} +
           extra;
  }

  void cli(const QString& what, const QStringList& args, int code, const QString& fragment) {
    QProcess p;
    p.start(QStringLiteral(MEMMAMBA_CLI), args);
    QVERIFY(p.waitForFinished(120000));
    const QString err = QString::fromUtf8(p.readAllStandardError());
    QVERIFY2(p.exitCode() == code, qPrintable(what + QStringLiteral(": exit ") + QString::number(p.exitCode()) + QStringLiteral(" ") + err));
    QVERIFY2(err.contains(fragment), qPrintable(what + QStringLiteral(": ") + err));
    const QStringList lines = err.split(QLatin1Char('\n'), Qt::SkipEmptyParts);
    QString message = lines.isEmpty() ? QString() : lines.last();
    for (const QString& l : lines)
      if (l.startsWith(QLatin1String("error"))) message = l;
    record(QStringLiteral("CLI flag"), what + QStringLiteral(" (exit %1)").arg(code), message);
  }

 private Q_SLOTS:
  void initTestCase() {
    configure_cpu_runtime();
    QVERIFY(dir_.isValid());
    catalogue_ = QStringLiteral("| input | case | message |\n| --- | --- | --- |\n");
  }

  void memoryEdits() {
    const ModelConfig c = testing::tiny_config();
    auto edit_file = [&](const char* name, const std::string& json) { return write(name, json); };
    refuse("memory edits", "not JSON", [&] { MemoryEdits::load(edit_file("e1.json", "[{kind: drop}]"), c, 100); }, "is not JSON");
    refuse("memory edits", "an object, not a list", [&] { MemoryEdits::load(edit_file("e2.json", R"({"kind": "pin"})"), c, 100); },
           "JSON list");
    refuse("memory edits", "unknown kind", [&] { MemoryEdits::load(edit_file("e3.json", R"([{"kind": "erase"}])"), c, 100); },
           "unknown kind");
    refuse("memory edits", "layer out of range", [&] { MemoryEdits::load(edit_file("e4.json", R"([{"kind": "pin", "layer": 12, "note": 0}])"), c, 100); },
           "out of range");
    refuse("memory edits", "position past the text",
           [&] { MemoryEdits::load(edit_file("e5.json", R"([{"kind": "plant", "layer": 0, "source": 3, "position": 4000}])"), c, 100); },
           "past the text");
    refuse("memory edits", "a note the run never made",
           [&] { MemoryEdits::load(edit_file("e6.json", R"([{"kind": "drop", "layer": 0, "note": 99}])"), c, 100).check_note_ids({4, 4, 4, 4}); },
           "never made");
    refuse("memory edits", "missing file", [&] { MemoryEdits::load(path("none.json"), c, 100); }, "No such file");
  }

  void texts() {
    refuse("text", "empty file", [&] { load_text_file(write("empty.txt", "")); }, "empty");
    refuse("text", "binary (PNG bytes)", [&] { load_text_file(write("image.txt", std::string("\x89PNG\r\n\x1a\n\0\0\0\rIHDR", 16))); },
           "binary");
    refuse("text", "mixed encodings (UTF-8 and CP-1252 bytes)", [&] { load_text_file(write("mixed.txt", "caf\xc3\xa9 au lait, caf\xe9 noir\n")); },
           "mixes encodings");
    BookOptions utf8;
    utf8.encoding = "utf-8";
    refuse("text", "--encoding utf-8, invalid UTF-8", [&] { load_book(write("latin1.txt", "caf\xe9 au lait\n"), utf8); }, "UTF-8");
    refuse("text", "--encoding utf-8, truncated sequence at the end", [&] { load_book(write("cut.txt", "na\xc3"), utf8); }, "UTF-8");
    refuse("text", "--encoding utf-8, overlong encoding", [&] { load_book(write("overlong.txt", "a\xc0\xafz"), utf8); }, "UTF-8");
    refuse("text", "UTF-16 without a byte-order mark", [&] { load_text_file(write("nobom.txt", std::string("h\0i\0", 4))); },
           "--encoding utf-16le");
    refuse("text", "UTF-16 with an odd byte count", [&] { load_text_file(write("odd.txt", "\xff\xfeh\0i")); }, "odd number");
    BookOptions unknown;
    unknown.encoding = "klingon";
    refuse("text", "unknown --encoding", [&] { load_book(write("ok.txt", "fine\n"), unknown); }, "unknown encoding");
    refuse("text", "HTML with only scripts", [&] { load_text_file(write("s.html", "<html><body><script>run()</script></body></html>")); },
           "no text");
    refuse("text", "a zip that is not an EPUB (no container)", [&] { load_text_file(write("z.epub", std::string("PK\x05\x06", 4) + std::string(18, '\0'))); },
           "EPUB");
    refuse("text", "truncated PDF", [&] { load_text_file(write("cut.pdf", "%PDF-1.4\n1 0 obj << /Type /Catalog")); }, "PDF");
    refuse("text", "a directory", [&] { load_text_file(dir_.path().toStdString()); }, "is a directory");
    refuse("text", "missing file", [&] { load_text_file(path("nowhere.txt")); }, "No such file");
    const std::string link = path("dangling.txt");
    QCOMPARE(::symlink(path("gone.txt").c_str(), link.c_str()), 0);
    refuse("text", "dangling symbolic link", [&] { load_text_file(link); }, "cannot open");
    const std::string fifo = path("pipe.txt");
    QCOMPARE(::mkfifo(fifo.c_str(), 0600), 0);
    refuse("text", "a named pipe (would block a reader)", [&] { load_text_file(fifo); }, "not a regular file");
    // 2 GiB without writing 2 GiB: a sparse file is refused by its size before any read.
    const std::string huge = path("huge.txt");
    {
      std::ofstream(huge) << "x";
      QCOMPARE(::truncate(huge.c_str(), static_cast<off_t>(2) << 30), 0);
    }
    refuse("text", "2 GiB file", [&] { load_text_file(huge); }, "more than the limit");
    if (::geteuid() != 0) {  // root reads whatever the mode says
      const std::string locked = write("locked.txt", "secret\n");
      ::chmod(locked.c_str(), 0);
      refuse("text", "unreadable (mode 000)", [&] { load_text_file(locked); }, "Permission denied");
    }
    // Still usable: a good text right after.
    QCOMPARE(load_text_file(write("good.txt", "\xef\xbb\xbf" "fine\r\n")), std::string("fine\n"));
  }

  void checkpoints() {
    const std::string good = read(kGoodCheckpoint);
    refuse("checkpoint", "truncated (half the file)", [&] { parse_checkpoint(good.substr(0, good.size() / 2), "half"); },
           "half");
    refuse("checkpoint", "4 bytes", [&] { parse_checkpoint(good.substr(0, 4), "tiny"); }, "too short");
    std::string hostile = good;
    const uint64_t huge_header = ~uint64_t{0} >> 1;
    std::memcpy(hostile.data(), &huge_header, 8);
    refuse("checkpoint", "header length 2^63", [&] { parse_checkpoint(hostile, "hostile"); }, "header too large");
    uint64_t past_end = good.size();
    std::memcpy(hostile.data(), &past_end, 8);
    refuse("checkpoint", "header length past the end of the file", [&] { parse_checkpoint(hostile, "past"); }, "truncated");
    refuse("checkpoint", "header is not JSON", [&] {
      std::string b = good;
      b[8] = '!';
      parse_checkpoint(b, "notjson");
    }, "notjson");
    refuse("checkpoint", "wrong shape", [&] {
      parse_checkpoint(rebuild(kGoodCheckpoint, [](const std::string& n, DType&, std::vector<int64_t>& shape, std::string& data) {
        if (n == "embedding.weight") { shape[0] -= 1; data.resize(data.size() - static_cast<size_t>(shape[1]) * 4); }
        return true;
      }), "shape");
    }, "has shape");
    refuse("checkpoint", "wrong dtype (I32 weights)", [&] {
      parse_checkpoint(rebuild(kGoodCheckpoint, [](const std::string& n, DType& dtype, std::vector<int64_t>&, std::string&) {
        if (n == "norm_f.weight") dtype = DType::I32;
        return true;
      }), "dtype");
    }, "weights must be F32, BF16 or F16");
    refuse("checkpoint", "NaN weights", [&] {
      parse_checkpoint(rebuild(kGoodCheckpoint, [](const std::string& n, DType&, std::vector<int64_t>&, std::string& data) {
        if (n == "norm_f.weight") { const float nan = std::nanf(""); std::memcpy(data.data(), &nan, 4); }
        return true;
      }), "nan");
    }, "NaN or infinite");
    refuse("checkpoint", "a tensor the config needs is missing", [&] {
      parse_checkpoint(rebuild(kGoodCheckpoint, [](const std::string& n, DType&, std::vector<int64_t>&, std::string&) {
        return n != "norm_f.weight";
      }), "missing");
    }, "missing tensor");
    refuse("checkpoint", "config metadata says 3 layers, weights hold 2", [&] {
      parse_checkpoint(rebuild(kGoodCheckpoint, [](auto&&...) { return true; }, [](std::map<std::string, std::string>& m) {
        Json c = Json::parse(m.at("config"));
        c["n_layers"] = 3;
        m["config"] = c.dump();
      }), "mismatch");
    }, "missing tensor");
    refuse("checkpoint", "config metadata with an unknown key", [&] {
      parse_checkpoint(rebuild(kGoodCheckpoint, [](auto&&...) { return true; }, [](std::map<std::string, std::string>& m) {
        Json c = Json::parse(m.at("config"));
        c["d_modle"] = 16;
        m["config"] = c.dump();
      }), "typo");
    }, "d_modle");
    refuse("checkpoint", "no config (a foreign safetensors file)", [&] {
      parse_checkpoint(rebuild(kGoodCheckpoint, [](auto&&...) { return true; }, [](std::map<std::string, std::string>& m) {
        m.erase("config");
      }), "foreign");
    }, "no model config");
    refuse("checkpoint", "a trace given as a checkpoint", [&] { load_checkpoint(kGoodTrace); }, "this is a trace");
    QVERIFY(load_checkpoint(kGoodCheckpoint).weights.has("norm_f.weight"));  // still usable
  }

  void tokenizers() {
    refuse("tokenizer", "missing file", [&] { Tokenizer::load(path("none.model")); }, "cannot open");
    refuse("tokenizer", "empty file", [&] { Tokenizer::load(write("empty.model", "")); }, "is empty");
    refuse("tokenizer", "corrupt (random bytes)", [&] {
      std::string junk(4096, '\0');
      for (size_t i = 0; i < junk.size(); ++i) junk[i] = static_cast<char>((i * 2654435761u) >> 13);
      Tokenizer::load(write("junk.model", junk));
    }, "not a SentencePiece model");
    refuse("tokenizer", "truncated model", [&] {
      const std::string good = read(kGoodTokenizer);
      Tokenizer::load(write("cut.model", good.substr(0, good.size() / 3)));
    }, "not a SentencePiece model");
    refuse("tokenizer", "corrupt normalization table that SentencePiece parses (a fuzz find: encoding read out of bounds)",
           [&] { Tokenizer::load(kCorpus + "tokenizer/corrupt-charsmap.model"); }, "corrupt");
    // The vocabulary check happens where a model and a tokenizer meet: the CLI and the app.
    cli(QStringLiteral("tokenizer of 8192 pieces with a 400-token model"),
        {QStringLiteral("run"), QString::fromStdString(kCorpus + "text/ascii.txt"), QStringLiteral("--out"),
         QString::fromStdString(path("x.trace")), QStringLiteral("--checkpoint"), QString::fromStdString(kGoodCheckpoint)},
        3, QStringLiteral("do not belong together"));
    QVERIFY(!QFile::exists(QString::fromStdString(path("x.trace"))));
    QVERIFY(Tokenizer::load(kGoodTokenizer).vocab_size() == 400);
  }

  void traces() {
    const std::string good = read(kGoodTrace);
    refuse("trace", "truncated", [&] { Trace::parse(good.substr(0, good.size() - 100), "cut.trace"); }, "cut.trace");
    refuse("trace", "from another format version", [&] {
      Trace::parse(rebuild(kGoodTrace, [](auto&&...) { return true; },
                           [](std::map<std::string, std::string>& m) { m["version"] = "99"; }), "v99.trace");
    }, "version 99 is not supported");
    refuse("trace", "a checkpoint opened as a trace", [&] { Trace::load(kGoodCheckpoint); }, "not a MemMamba trace");
    refuse("trace", "an event pointing at a note that does not exist", [&] {
      Trace::parse(rebuild(kGoodTrace, [](const std::string& n, DType&, std::vector<int64_t>&, std::string& data) {
        if (n == "events.note" && data.size() >= 8) { const int64_t bad = 1 << 30; std::memcpy(data.data(), &bad, 8); }
        return true;
      }), "events.trace");
    }, "out of range");
    refuse("trace", "a note source outside the text", [&] {
      Trace::parse(rebuild(kGoodTrace, [](const std::string& n, DType&, std::vector<int64_t>&, std::string& data) {
        if (n == "notes.sources" && data.size() >= 8) { const int64_t bad = -7; std::memcpy(data.data(), &bad, 8); }
        return true;
      }), "sources.trace");
    }, "outside the text");
    refuse("trace", "per-token arrays of different lengths", [&] {
      Trace::parse(rebuild(kGoodTrace, [](const std::string& n, DType&, std::vector<int64_t>& shape, std::string& data) {
        if (n == "loss") { shape[0] -= 1; data.resize(data.size() - 4); }
        return true;
      }), "lengths.trace");
    }, "differ in length");
    QVERIFY(Trace::load(kGoodTrace).length() > 0);
  }

  void configsAndResults() {
    refuse("config", "unknown key", [&] { ModelConfig::from_json(Json::parse(R"({"d_modle": 16})")); }, "d_modle");
    refuse("config", "negative width", [&] { ModelConfig::from_json(Json::parse(R"({"d_model": -4})")).validate(); }, "d_model");
    refuse("config", "a string where a number belongs", [&] { ModelConfig::from_json(Json::parse(R"({"n_layers": "8"})")); },
           "n_layers");
    refuse("config", "10,000 nested arrays (stack bomb)", [&] { Json::parse(std::string(10000, '[') + std::string(10000, ']')); },
           "deep");
    refuse("evaluation result", "not JSON", [&] { eval::load_passkey_grid(write("grid.json", "{cells: oops")); },
           "not valid JSON");
    refuse("evaluation result", "JSON of another kind", [&] { eval::parse_passkey_grid(Json::parse(R"({"ppl": 3})")); },
           "not a passkey result");
    refuse("evaluation result", "accuracy 7", [&] {
      eval::parse_passkey_grid(Json::parse(R"({"cells": [{"length": 1000, "depth": 0.5, "accuracy": 7}], "cases": []})"));
    }, "accuracy is outside");
    refuse("evaluation result", "a docs case whose golden document is not among its documents", [&] {
      eval::parse_passkey_grid(Json::parse(R"({"evaluation": "noisy_document_retrieval", "cases": [{"noise_documents": 10,
          "golden_index": 11, "golden_id": 5, "answer": "5", "hit": true}]})"));
    }, "golden_index");
    refuse("evaluation result", "a docs case without its hit", [&] {
      eval::parse_passkey_grid(Json::parse(R"({"evaluation": "noisy_document_retrieval", "cases": [{"noise_documents": 10,
          "golden_index": 1, "golden_id": 5, "answer": "5"}]})"));
    }, "hit");
    refuse("evaluation result", "100,000 distinct lengths (a 10^10-cell grid)", [&] {
      Json cells = Json::array();
      for (int i = 0; i < 100000; ++i) {
        Json c = Json::object();
        c["length"] = 64 + i;
        c["depth"] = (i % 1000) / 1000.0;
        c["accuracy"] = 1.0;
        cells.push_back(c);
      }
      Json r = Json::object();
      r["cells"] = cells;
      r["cases"] = Json::array();
      eval::parse_passkey_grid(r);
    }, "more than 256 lengths");
    refuse("evaluation result", "case settings with wording 99", [&] {
      eval::parse_passkey_grid(Json::parse(
          R"({"cells": [{"length": 1000, "depth": 0.5, "accuracy": 1}], "cases": [], "settings": {"case": {"key_kind": "digits",
              "key_digits": [5, 5], "wordings": [99], "facts": 1, "distractors": 0}}})"));
    }, "wording 99 does not exist");
  }

  // Flags added with the notes model: a checkpoint's default thresholds (convert) and the
  // surprise selection loss (train) refuse bad values and orphan flags before any work.
  void thresholdAndSurpriseFlags() {
    cli(QStringLiteral("convert --tau-note 3"),
        {QStringLiteral("convert"), QString::fromStdString(kGoodCheckpoint), QString::fromStdString(path("t.safetensors")),
         QStringLiteral("--tau-note"), QStringLiteral("3")},
        2, QStringLiteral("tau-note"));
    QVERIFY(!QFile::exists(QString::fromStdString(path("t.safetensors"))));
    // A good threshold becomes the checkpoint's default; the weights stay as they were.
    QProcess convert;
    convert.start(QStringLiteral(MEMMAMBA_CLI),
                  {QStringLiteral("convert"), QString::fromStdString(kGoodCheckpoint), QString::fromStdString(path("t.safetensors")),
                   QStringLiteral("--tau-note"), QStringLiteral("0.6"), QStringLiteral("--tau-retrieve"), QStringLiteral("0.25"),
                   QStringLiteral("--dtype"), QStringLiteral("f32")});
    QVERIFY(convert.waitForFinished(120000) && convert.exitCode() == 0);
    const Checkpoint before = load_checkpoint(kGoodCheckpoint), after = load_checkpoint(path("t.safetensors"));
    QCOMPARE(after.config.tau_note, 0.6);
    QCOMPARE(after.config.tau_retrieve, 0.25);
    QVERIFY(before.config.tau_note != 0.6);
    for (const auto& [name, tensor] : before.weights.all())
      QVERIFY(torch::equal(tensor.to(torch::kFloat32), after.weights[name].to(torch::kFloat32)));
    cli(QStringLiteral("train --surprise-share without --surprise-notes"),
        trainArgs({QStringLiteral("--surprise-share"), QStringLiteral("0.01")}), 2, QStringLiteral("go with --surprise-notes"));
    cli(QStringLiteral("train --surprise-share 0.9"),
        trainArgs({QStringLiteral("--surprise-notes"), QStringLiteral("1"), QStringLiteral("--surprise-share"), QStringLiteral("0.9")}),
        2, QStringLiteral("surprise-share"));
    cli(QStringLiteral("train --note-margin without --note-loss"), trainArgs({QStringLiteral("--note-margin"), QStringLiteral("0.2")}),
        2, QStringLiteral("--note-margin goes with"));
    cli(QStringLiteral("train --quiet-notes -1"), trainArgs({QStringLiteral("--quiet-notes"), QStringLiteral("-1")}), 2,
        QStringLiteral("quiet-notes"));
    cli(QStringLiteral("train --quiet-notes with --mamba-only"),
        trainArgs({QStringLiteral("--quiet-notes"), QStringLiteral("1"), QStringLiteral("--mamba-only")}), 2,
        QStringLiteral("drop --mamba-only"));
  }

  void cliFlags() {
    const QString text = QString::fromStdString(kCorpus + "text/ascii.txt"), out = QString::fromStdString(path("o.trace"));
    const QStringList tiny = {QStringLiteral("--checkpoint"), QString::fromStdString(kGoodCheckpoint), QStringLiteral("--tokenizer"),
                              QString::fromStdString(kGoodTokenizer)};
    auto run = [&](const QStringList& extra) { return QStringList{QStringLiteral("run"), text, QStringLiteral("--out"), out} + tiny + extra; };
    cli(QStringLiteral("--max-tokens -5"), run({QStringLiteral("--max-tokens"), QStringLiteral("-5")}), 2, QStringLiteral("max-tokens"));
    cli(QStringLiteral("--topk 0"), run({QStringLiteral("--topk"), QStringLiteral("0")}), 2, QStringLiteral("topk"));
    cli(QStringLiteral("--tau-note 5"), run({QStringLiteral("--tau-note"), QStringLiteral("5")}), 2, QStringLiteral("tau-note"));
    cli(QStringLiteral("--tau-retrieve nan"), run({QStringLiteral("--tau-retrieve"), QStringLiteral("nan")}), 2, QStringLiteral("tau-retrieve"));
    cli(QStringLiteral("--fusion-gain -2"), run({QStringLiteral("--fusion-gain"), QStringLiteral("-2")}), 2, QStringLiteral("fusion-gain"));
    cli(QStringLiteral("convert --fusion-gain inf"),
        {QStringLiteral("convert"), QString::fromStdString(kGoodCheckpoint), QString::fromStdString(path("g.safetensors")),
         QStringLiteral("--fusion-gain"), QStringLiteral("inf")},
        2, QStringLiteral("fusion-gain"));
    QVERIFY(!QFile::exists(QString::fromStdString(path("g.safetensors"))));
    cli(QStringLiteral("convert --fusion-gain on a Mamba-only model"),
        {QStringLiteral("convert"), QString::fromStdString(std::string(MEMMAMBA_SOURCE_DIR) + "/sample_data/mamba-small.safetensors"),
         QString::fromStdString(path("m.safetensors")), QStringLiteral("--fusion-gain"), QStringLiteral("3")},
        2, QStringLiteral("Mamba-only"));
    QVERIFY(!QFile::exists(QString::fromStdString(path("m.safetensors"))));
    cli(QStringLiteral("--chunk abc"), run({QStringLiteral("--chunk"), QStringLiteral("abc")}), 2, QStringLiteral("chunk"));
    cli(QStringLiteral("unknown flag --colour"), run({QStringLiteral("--colour"), QStringLiteral("red")}), 2, QStringLiteral("colour"));
    cli(QStringLiteral("--device tpu"), run({QStringLiteral("--device"), QStringLiteral("tpu")}), 2, QStringLiteral("device"));
    cli(QStringLiteral("eval passkey --lengths 10"),
        QStringList{QStringLiteral("eval"), QStringLiteral("passkey"), QStringLiteral("--out"), QString::fromStdString(path("g")),
                    QStringLiteral("--lengths"), QStringLiteral("10")} + tiny,
        2, QStringLiteral("lengths"));
    auto passkey_eval = [&](const QString& flag, const QString& value) {
      return QStringList{QStringLiteral("eval"), QStringLiteral("passkey"), QStringLiteral("--out"), QString::fromStdString(path("g")),
                         flag, value} + tiny;
    };
    cli(QStringLiteral("eval passkey --key-digits 0"), passkey_eval(QStringLiteral("--key-digits"), QStringLiteral("0")), 2,
        QStringLiteral("--key-digits"));
    cli(QStringLiteral("eval passkey --key-digits 9-3"), passkey_eval(QStringLiteral("--key-digits"), QStringLiteral("9-3")), 2,
        QStringLiteral("--key-digits"));
    cli(QStringLiteral("eval passkey --key-kind colour"), passkey_eval(QStringLiteral("--key-kind"), QStringLiteral("colour")), 2,
        QStringLiteral("--key-kind"));
    cli(QStringLiteral("eval passkey --wording 99"), passkey_eval(QStringLiteral("--wording"), QStringLiteral("99")), 2,
        QStringLiteral("--wording"));
    cli(QStringLiteral("eval passkey --facts 0"), passkey_eval(QStringLiteral("--facts"), QStringLiteral("0")), 2,
        QStringLiteral("facts"));
    cli(QStringLiteral("eval passkey --look-alikes 0.5 (no other numbers)"), passkey_eval(QStringLiteral("--look-alikes"), QStringLiteral("0.5")),
        2, QStringLiteral("--look-alikes needs other numbers"));
    cli(QStringLiteral("eval passkey --look-alikes 2"),
        passkey_eval(QStringLiteral("--facts"), QStringLiteral("4")) + QStringList{QStringLiteral("--look-alikes"), QStringLiteral("2")},
        2, QStringLiteral("--look-alikes = 2 is outside [0, 1]"));
    cli(QStringLiteral("eval passkey --key-kind word --key-digits 5"),
        passkey_eval(QStringLiteral("--key-kind"), QStringLiteral("word")) + QStringList{QStringLiteral("--key-digits"), QStringLiteral("5")},
        2, QStringLiteral("--key-digits goes with"));
    cli(QStringLiteral("info --top-noted on a checkpoint"),
        {QStringLiteral("info"), QString::fromStdString(kGoodCheckpoint), QStringLiteral("--top-noted"), QStringLiteral("5")}, 2,
        QStringLiteral("--top-noted needs a trace"));
    cli(QStringLiteral("train --case-mix without --varied-cases"),
        trainArgs({QStringLiteral("--passkey-fraction"), QStringLiteral("0.5"), QStringLiteral("--case-mix"), QStringLiteral("passkey")}),
        2, QStringLiteral("--case-mix goes with"));
    cli(QStringLiteral("train --key-digits 0-3"),
        trainArgs({QStringLiteral("--passkey-fraction"), QStringLiteral("0.5"), QStringLiteral("--varied-cases"), QStringLiteral("--key-digits"),
                  QStringLiteral("0-3")}),
        2, QStringLiteral("--key-digits: key digits must be"));
    cli(QStringLiteral("train --note-key-end without passkey rows"),
        trainArgs({QStringLiteral("--passkey-fraction"), QStringLiteral("0"), QStringLiteral("--note-key-end")}),
        2, QStringLiteral("--note-key-end needs passkey rows"));
    cli(QStringLiteral("train --case-mix lottery"),
        trainArgs({QStringLiteral("--passkey-fraction"), QStringLiteral("0.5"), QStringLiteral("--varied-cases"), QStringLiteral("--case-mix"),
                  QStringLiteral("lottery")}),
        2, QStringLiteral("--case-mix must be all, passkey, composed, facts, composed-facts, composed-all or composed-any"));
    cli(QStringLiteral("train --reference-marks without passkey rows"),
        trainArgs({QStringLiteral("--passkey-fraction"), QStringLiteral("0"), QStringLiteral("--reference-marks"), QStringLiteral("4")}),
        2, QStringLiteral("--reference-marks needs passkey rows"));
    cli(QStringLiteral("train --reference-marks -1"),
        trainArgs({QStringLiteral("--passkey-fraction"), QStringLiteral("0.5"), QStringLiteral("--reference-marks"), QStringLiteral("-1")}),
        2, QStringLiteral("--reference-marks = -1 is outside [0, 50]"));
    cli(QStringLiteral("train --document-rows 1.5"),
        trainArgs({QStringLiteral("--passkey-fraction"), QStringLiteral("0.5"), QStringLiteral("--document-rows"), QStringLiteral("1.5")}),
        2, QStringLiteral("--document-rows"));
    cli(QStringLiteral("train --document-rows without passkey rows"),
        trainArgs({QStringLiteral("--passkey-fraction"), QStringLiteral("0"), QStringLiteral("--document-rows"), QStringLiteral("0.5")}),
        2, QStringLiteral("--document-rows needs passkey rows"));
    cli(QStringLiteral("train --document-reads without document rows"),
        trainArgs({QStringLiteral("--passkey-fraction"), QStringLiteral("0.5"), QStringLiteral("--document-reads")}),
        2, QStringLiteral("--document-reads goes with --document-rows"));
    cli(QStringLiteral("train --follow-up-questions without varied cases"),
        trainArgs({QStringLiteral("--passkey-fraction"), QStringLiteral("0.5"), QStringLiteral("--follow-up-questions")}),
        2, QStringLiteral("--follow-up-questions goes with --varied-cases"));
    cli(QStringLiteral("train --follow-up-questions without passkey rows"),
        trainArgs({QStringLiteral("--passkey-fraction"), QStringLiteral("0"), QStringLiteral("--follow-up-questions")}),
        2, QStringLiteral("--follow-up-questions needs passkey rows"));
    cli(QStringLiteral("train --choice-weight without rows with facts"),
        trainArgs({QStringLiteral("--passkey-fraction"), QStringLiteral("0.5"), QStringLiteral("--retrieval-loss"), QStringLiteral("1"),
                  QStringLiteral("--choice-weight"), QStringLiteral("8")}),
        2, QStringLiteral("--choice-weight needs rows with labelled facts"));
    cli(QStringLiteral("train --choice-weight 0.5"),
        trainArgs({QStringLiteral("--passkey-fraction"), QStringLiteral("0.5"), QStringLiteral("--varied-cases"), QStringLiteral("--case-mix"),
                  QStringLiteral("facts"), QStringLiteral("--retrieval-loss"), QStringLiteral("1"), QStringLiteral("--choice-weight"),
                  QStringLiteral("0.5")}),
        2, QStringLiteral("--choice-weight = 0.5 is outside [1, 1000]"));
    cli(QStringLiteral("train --choice-weight without a retrieval or answer loss"),
        trainArgs({QStringLiteral("--passkey-fraction"), QStringLiteral("0.5"), QStringLiteral("--varied-cases"), QStringLiteral("--case-mix"),
                  QStringLiteral("facts"), QStringLiteral("--choice-weight"), QStringLiteral("8")}),
        2, QStringLiteral("--choice-weight weighs the retrieval and answer losses"));
    cli(QStringLiteral("train --haystack sea"),
        trainArgs({QStringLiteral("--passkey-fraction"), QStringLiteral("0.5"), QStringLiteral("--haystack"), QStringLiteral("sea")}),
        2, QStringLiteral("--haystack"));
    cli(QStringLiteral("train --lr -1"),
        trainArgs({QStringLiteral("--lr"), QStringLiteral("-1")}),
        2, QStringLiteral("lr"));
    cli(QStringLiteral("train --answer-end 7"),
        trainArgs({QStringLiteral("--answer-end"), QStringLiteral("7 more")}),
        2, QStringLiteral("answer-end"));
    cli(QStringLiteral("train --passkey-min-length 20"),
        trainArgs({QStringLiteral("--passkey-min-length"), QStringLiteral("20")}),
        2, QStringLiteral("passkey-min-length"));
    cli(QStringLiteral("train --blind-needles 1.5"),
        trainArgs({QStringLiteral("--blind-needles"), QStringLiteral("1.5")}),
        2, QStringLiteral("blind-needles"));
    cli(QStringLiteral("train --passkey-fraction 0 --blind-needles 0.5"),
        trainArgs({QStringLiteral("--passkey-fraction"), QStringLiteral("0"), QStringLiteral("--blind-needles"), QStringLiteral("0.5")}),
        2, QStringLiteral("passkey rows"));
    cli(QStringLiteral("train --blind-every-fact without blind needles"),
        trainArgs({QStringLiteral("--blind-every-fact")}),
        2, QStringLiteral("blind needles"));
    cli(QStringLiteral("train --look-alikes without passkey rows"),
        trainArgs({QStringLiteral("--passkey-fraction"), QStringLiteral("0"), QStringLiteral("--look-alikes"), QStringLiteral("0.5")}),
        2, QStringLiteral("--look-alikes needs passkey rows"));
    cli(QStringLiteral("train --end-weight without an answer loss"),
        trainArgs({QStringLiteral("--end-weight"), QStringLiteral("4")}),
        2, QStringLiteral("--end-weight weighs the answer loss"));
    cli(QStringLiteral("train --teach-after-end without follow-up questions"),
        trainArgs({QStringLiteral("--teach-after-end"), QStringLiteral("--answer-loss"), QStringLiteral("1")}),
        2, QStringLiteral("--teach-after-end needs --follow-up-questions"));
    cli(QStringLiteral("bench --text on a missing book"),
        QStringList{QStringLiteral("bench"), QStringLiteral("--lengths"), QStringLiteral("64"), QStringLiteral("--text"),
                    QString::fromStdString(path("no-such-book.txt"))} + tiny,
        3, QStringLiteral("no-such-book.txt"));
    cli(QStringLiteral("bench --text on a book with no text"),
        QStringList{QStringLiteral("bench"), QStringLiteral("--lengths"), QStringLiteral("64"), QStringLiteral("--text"),
                    QString::fromStdString(write("blank.txt", "   \n\n  "))} + tiny,
        3, QStringLiteral("blank.txt"));
    cli(QStringLiteral("bench --bf16 --compare transformer on the CPU"),
        QStringList{QStringLiteral("bench"), QStringLiteral("--lengths"), QStringLiteral("64"), QStringLiteral("--bf16"),
                    QStringLiteral("--compare"), QStringLiteral("transformer")} + tiny, 2,
        QStringLiteral("--bf16 on the CPU times MemMamba's own runs"));
    cli(QStringLiteral("bench --compare transformer --transformer-max 0"),
        QStringList{QStringLiteral("bench"), QStringLiteral("--compare"), QStringLiteral("transformer"),
                    QStringLiteral("--transformer-max"), QStringLiteral("0")} + tiny,
        2, QStringLiteral("transformer-max"));
    QVERIFY(!QFile::exists(out));  // nothing half-written by any of them
  }

  void cleanupTestCase() {
    QVERIFY2(cases_ >= 30, qPrintable(QStringLiteral("only %1 cases").arg(cases_)));
    QFile f(QStringLiteral("bad-inputs.md"));
    if (f.open(QIODevice::WriteOnly | QIODevice::Truncate)) f.write(catalogue_.toUtf8());
  }
};

QTEST_GUILESS_MAIN(TestBadInputs)
#include "test_bad_inputs.moc"
