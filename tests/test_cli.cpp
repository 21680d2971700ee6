// The memmamba command line: exit codes, messages, outputs, and Ctrl-C leaving nothing behind.
#include <torch/torch.h>

#include <QtTest/QtTest>
#include <QProcess>
#include <csignal>

#include "model/checkpoint.h"
#include "model/config.h"
#include "model/json.h"
#include "model/trace.h"

using namespace memmamba;

namespace {
const QString kCli = QStringLiteral(MEMMAMBA_CLI);
const QString kSource = QStringLiteral(MEMMAMBA_SOURCE_DIR);

struct Result {
  int code;
  QString out, err;
};

Result run_cli(const QStringList& args, int timeout_ms = 120000) {
  QProcess p;
  p.start(kCli, args);
  p.waitForFinished(timeout_ms);
  return {p.exitStatus() == QProcess::NormalExit ? p.exitCode() : -1, QString::fromUtf8(p.readAllStandardOutput()),
          QString::fromUtf8(p.readAllStandardError())};
}
}  // namespace

class TestCli : public QObject {
  Q_OBJECT
  QTemporaryDir dir_;
  QString small_config_;

 private Q_SLOTS:
  void initTestCase() {
    ModelConfig c;
    c.d_model = 32;
    c.n_layers = 2;
    c.summary_dim = 16;
    c.pool_slots = 8;
    small_config_ = dir_.filePath("small.json");
    c.save(small_config_.toStdString());
  }

  void helpAndUsageErrors() {
    QCOMPARE(run_cli({"--help"}).code, 0);
    for (const char* cmd : {"info", "run", "generate", "bench", "tokenizer-train"}) {
      Result r = run_cli({cmd, "--help"});
      QCOMPARE(r.code, 0);
      QVERIFY2(r.out.contains("usage: memmamba"), cmd);
    }
    Result unknown = run_cli({"frobnicate"});
    QCOMPARE(unknown.code, 2);
    QVERIFY(unknown.err.contains("unknown command"));
    QCOMPARE(run_cli({"run"}).code, 2);
    Result bogus = run_cli({"run", "x.txt", "--out", "y", "--bogus"});
    QCOMPARE(bogus.code, 2);
    QVERIFY(bogus.err.contains("unknown option --bogus"));
    Result range = run_cli({"bench", "--lengths", "1k,0"});
    QCOMPARE(range.code, 2);
    QVERIFY(range.err.contains("outside"));
    Result tau = run_cli({"run", "x.txt", "--out", "y", "--tau-note", "abc", "--random-init", "0"});
    QCOMPARE(tau.code, 2);
    QCOMPARE(run_cli({"bench", "--compare", "gpt"}).code, 2);
    Result compare = run_cli({"bench", "--compare", "transformer", "--lengths", "64,128", "--config", small_config_});
    QVERIFY2(compare.code == 0, qPrintable(compare.err));
    QVERIFY(compare.out.contains("MemMamba / Mamba-only") && compare.out.contains("MemMamba / Transformer") &&
            compare.out.contains("MemMamba / DeciMamba"));
    // One row per length: tokens, four speeds and three ratios, all numbers.
    for (const char* length : {"64", "128"}) {
      bool found = false;
      for (const QString& line : compare.out.split('\n')) {
        const QStringList cells = line.simplified().split(' ');
        if (cells.size() != 8 || cells[0] != length) continue;
        found = true;
        for (const QString& cell : cells) QVERIFY2(cell.toDouble() > 0, qPrintable(line));
      }
      QVERIFY2(found, qPrintable(compare.out));
    }
    Result missing_value = run_cli({"run", "x.txt", "--out"});
    QCOMPARE(missing_value.code, 2);
    QVERIFY(missing_value.err.contains("needs a value"));
  }

  void badInputFilesExitWithThree() {
    const QString empty = dir_.filePath("empty.txt");
    QFile f(empty);
    QVERIFY(f.open(QIODevice::WriteOnly));
    f.close();
    const QString out = dir_.filePath("never.trace");
    Result r = run_cli({"run", empty, "--out", out, "--random-init", "0", "--config", small_config_});
    QCOMPARE(r.code, 3);
    QVERIFY(r.err.contains("is empty"));
    QVERIFY(!QFile::exists(out));
    Result missing = run_cli({"run", dir_.filePath("absent.txt"), "--out", out, "--random-init", "0"});
    QCOMPARE(missing.code, 3);
    QFile g(dir_.filePath("garbage.safetensors"));
    QVERIFY(g.open(QIODevice::WriteOnly));
    g.write("\xff\xff\xff\xff\xff\xff\xff\x7f{}");
    g.close();
    Result info = run_cli({"info", g.fileName()});
    QCOMPARE(info.code, 3);
    QVERIFY(info.err.contains("header too large"));
    ModelConfig tiny_vocab;
    tiny_vocab.vocab_size = 100;
    tiny_vocab.d_model = 16;
    tiny_vocab.n_layers = 2;
    const QString tv = dir_.filePath("tv.json");
    tiny_vocab.save(tv.toStdString());
    Result mismatch = run_cli({"run", kSource + "/sample_data/The-Time-Machine_35.txt", "--out", out, "--random-init", "0",
                               "--config", tv});
    QCOMPARE(mismatch.code, 3);
    QVERIFY(mismatch.err.contains("do not belong together"));
  }

  void tracesATextAndSummarisesIt() {
    const QString out = dir_.filePath("sample.trace");
    Result r = run_cli({"run", kSource + "/sample_data/The-Time-Machine_35.txt", "--out", out, "--random-init", "3",
                        "--config", small_config_, "--max-tokens", "600", "--retention-sources", "5,100"});
    QVERIFY2(r.code == 0, qPrintable(r.err));
    QVERIFY(r.out.contains("tokens            600"));
    Trace t = Trace::load(out.toStdString());
    QCOMPARE(t.length(), int64_t(600));
    QCOMPARE(t.retention.size(), size_t(4));  // 2 sources x 2 layers
    QVERIFY(t.text.rfind("\n", 0) != 0);
    QVERIFY(t.char_end.back() <= static_cast<int64_t>(t.text.size()));
    // The book is recorded absolute and relative to the trace, so a moved trace finds it.
    const QString book = QFileInfo(kSource + "/sample_data/The-Time-Machine_35.txt").canonicalFilePath();
    QCOMPARE(QFileInfo(QString::fromStdString(t.run_info.at("source_file").as_string())).canonicalFilePath(), book);
    QVERIFY(QFileInfo(QString::fromStdString(t.run_info.at("source_file").as_string())).isAbsolute());
    const QString relative = QString::fromStdString(t.run_info.at("source_file_relative").as_string());
    QVERIFY(QFileInfo(relative).isRelative());
    QCOMPARE(QFileInfo(QFileInfo(out).absoluteDir().filePath(relative)).canonicalFilePath(), book);
    Result info = run_cli({"info", out});
    QCOMPARE(info.code, 0);
    QVERIFY(info.out.contains("noted%"));
  }

  void readsCheckpoints() {
    ModelConfig c = ModelConfig::load(small_config_.toStdString());
    const QString ck = dir_.filePath("small.safetensors");
    save_checkpoint(ck.toStdString(), c, Weights::random(c, 2), DType::BF16, {{"tokens_seen", "1234"}});
    Result info = run_cli({"info", ck});
    QVERIFY2(info.code == 0, qPrintable(info.err));
    QVERIFY(info.out.contains("storage dtype     BF16"));
    QVERIFY(info.out.contains("tokens_seen       1234"));
    QVERIFY(info.out.contains(QString("parameters        %1").arg(parameter_count(c))));
    Result gen = run_cli({"generate", "--prompt", "Once upon a time", "--checkpoint", ck, "--max-new", "3"});
    QVERIFY2(gen.code == 0, qPrintable(gen.err));
    // A trace is not a checkpoint.
    const QString trace = dir_.filePath("for-checkpoint.trace");
    QCOMPARE(run_cli({"run", kSource + "/sample_data/Alice-s-Adventures-in-Wonderland_11.txt", "--out", trace, "--checkpoint", ck,
                      "--max-tokens", "50"}).code, 0);
    Result wrong = run_cli({"run", kSource + "/sample_data/Alice-s-Adventures-in-Wonderland_11.txt", "--out",
                            dir_.filePath("x.trace"), "--checkpoint", trace});
    QCOMPARE(wrong.code, 3);
    QVERIFY(wrong.err.contains("a trace, not a checkpoint"));
    Result both = run_cli({"run", "a.txt", "--out", "b", "--checkpoint", ck, "--random-init", "1"});
    QCOMPARE(both.code, 2);
  }

  void evaluatesPasskeys() {
    QCOMPARE(run_cli({"eval", "passkey", "--out", "x", "--depths", "2"}).code, 2);
    QCOMPARE(run_cli({"eval", "nothing"}).code, 2);
    QCOMPARE(run_cli({"eval", "passkey", "--out", "x", "--haystack", "sand"}).code, 2);
    const QString prefix = dir_.filePath("pk");
    Result r = run_cli({"eval", "passkey", "--out", prefix, "--lengths", "128", "--depths", "0,1", "--samples", "1",
                        "--random-init", "0", "--config", small_config_, "--max-new", "2"});
    QVERIFY2(r.code == 0, qPrintable(r.err));
    QVERIFY(r.out.contains("UNTRAINED"));
    QVERIFY(QFile::exists(prefix + ".json") && QFile::exists(prefix + ".csv"));
    QFile csv(prefix + ".csv");
    QVERIFY(csv.open(QIODevice::ReadOnly));
    QCOMPARE(csv.readAll().count('\n'), 3);
    // The default haystack is the bundled evaluation book, which no bundled model trained on;
    // the case settings are recorded.
    QFile result(prefix + ".json");
    QVERIFY(result.open(QIODevice::ReadOnly));
    const Json grid = Json::parse(result.readAll().toStdString());
    QVERIFY(QString::fromStdString(grid.at("meta").at("book").as_string()).endsWith(QStringLiteral("The-Adventures-of-Tom-Sawyer_74.txt")));
    QCOMPARE(grid.at("settings").at("case").at("facts").as_int(), int64_t{1});
    QCOMPARE(run_cli({"eval", "docs", "--out", "x", "--noise", "1000"}).code, 2);
    const QString docs = dir_.filePath("docs.json");
    Result d = run_cli({"eval", "docs", "--out", docs, "--noise", "3", "--samples", "1", "--random-init", "0", "--config",
                        small_config_});
    QVERIFY2(d.code == 0, qPrintable(d.err));
    QVERIFY(QFile::exists(docs));
    const QString ppl = dir_.filePath("ppl.json");
    Result p = run_cli({"eval", "ppl", kSource + "/sample_data/Alice-s-Adventures-in-Wonderland_11.txt", "--out", ppl,
                        "--lengths", "512", "--windows", "1", "--random-init", "0", "--config", small_config_});
    QVERIFY2(p.code == 0, qPrintable(p.err));
    Result f = run_cli({"eval", "fidelity", kSource + "/sample_data/Alice-s-Adventures-in-Wonderland_11.txt", "--out",
                        dir_.filePath("fid.json"), "--max-tokens", "256", "--random-init", "0", "--config", small_config_});
    QVERIFY2(f.code == 0, qPrintable(f.err));
  }

  void generatesInStepMode() {
    Result r = run_cli({"generate", "--prompt", "The pass key is 123. The pass key is", "--random-init", "1", "--config",
                        small_config_, "--max-new", "4"});
    QVERIFY2(r.code == 0, qPrintable(r.err));
    QVERIFY(r.err.contains("4 generated"));
  }

  // init --context-taps: the earlier taps of every layer's context mix, the token's at 1;
  // refused for a config without a mix.
  void initSetsContextTaps() {
    const QString out = dir_.filePath("context.safetensors");
    QCOMPARE(run_cli({"init", out, "--config", small_config_, "--context-taps", "0.25"}).code, 2);
    ModelConfig c = ModelConfig::load(small_config_.toStdString());
    c.memory_context = 4;
    const QString config = dir_.filePath("context.json");
    c.save(config.toStdString());
    QCOMPARE(run_cli({"init", out, "--config", config, "--context-taps", "abc"}).code, 2);
    Result r = run_cli({"init", out, "--config", config, "--context-taps", "0.25"});
    QVERIFY2(r.code == 0, qPrintable(r.err));
    const Checkpoint ck = load_checkpoint(out.toStdString());
    QCOMPARE(ck.config.memory_context, int64_t(4));
    for (int64_t l = 0; l < c.n_layers; ++l) {
      const auto taps = ck.weights["layers." + std::to_string(l) + ".memory.context.weight"];
      QCOMPARE(taps.sizes().vec(), (std::vector<int64_t>{c.d_model, 4}));
      QVERIFY(taps.narrow(1, 0, 3).eq(0.25).all().item<bool>());
      QVERIFY(taps.select(1, 3).eq(1.0).all().item<bool>());
    }
  }

  void interruptLeavesNoFile() {
    const QString out = dir_.filePath("interrupted.trace");
    QProcess p;
    p.start(kCli, {"run", kSource + "/sample_data/The-Time-Machine_35.txt", "--out", out, "--random-init", "0", "--chunk", "512"});
    QVERIFY(p.waitForStarted());
    // Wait for the first progress line, then interrupt.
    QByteArray err;
    QTRY_VERIFY_WITH_TIMEOUT((err += p.readAllStandardError()).contains("tracing") || p.state() != QProcess::Running, 60000);
    QCOMPARE(p.state(), QProcess::Running);
    ::kill(static_cast<pid_t>(p.processId()), SIGINT);
    QVERIFY(p.waitForFinished(60000));
    QCOMPARE(p.exitCode(), 130);
    QVERIFY(!QFile::exists(out));
    QDir d(dir_.path());
    QVERIFY(d.entryList({"interrupted.trace*"}).isEmpty());
  }
};

QTEST_GUILESS_MAIN(TestCli)
#include "test_cli.moc"
