// The trainer: shards round-trip and refuse corrupt files; a tiny CPU run lowers the loss;
// resuming from a checkpoint continues with exactly the losses of an uninterrupted run.
#include <QTemporaryDir>
#include <QtTest/QtTest>

#include <cstdio>
#include <fstream>
#include <vector>

#include "model/safetensors.h"
#include "model/train/token_shards.h"
#include "model/train/trainer.h"
#include "tests/test_helpers.h"

using namespace memmamba;

class TestTrainer : public QObject {
  Q_OBJECT
 private:
  // A patterned corpus the tiny model can learn quickly: repeated phrases with variation.
  static void writeShards(const QString& dir) {
    TokenShard train, held;
    train.vocab_size = held.vocab_size = 64;
    for (int i = 0; i < 6000; ++i) {
      const int phrase = (i / 8) % 5;
      train.tokens.push_back(static_cast<uint16_t>((phrase * 7 + i % 8) % 64));
      if (i < 1500) held.tokens.push_back(static_cast<uint16_t>(((i / 8 + 2) % 5 * 7 + i % 8) % 64));
    }
    train.save((dir + "/train.tokens").toStdString());
    held.save((dir + "/heldout.tokens").toStdString());
  }

  static TrainOptions tinyRun(const QString& data, const QString& out, int64_t steps) {
    TrainOptions o;
    o.data_dir = data.toStdString();
    o.out_dir = out.toStdString();
    o.config = testing::tiny_config();
    o.seq_len = 32;
    o.batch = 4;
    o.accumulation = 2;
    o.steps = steps;
    o.lr = 1e-2;
    o.warmup = 3;
    o.eval_every = 0;
    o.checkpoint_every = 0;
    o.passkey_fraction = 0;
    o.seed = 5;
    return o;
  }

 private Q_SLOTS:
  void shardsRoundTripAndRefuseCorruptFiles() {
    QTemporaryDir dir;
    TokenShard s;
    s.vocab_size = 300;
    for (int i = 0; i < 1000; ++i) s.tokens.push_back(static_cast<uint16_t>(i % 300));
    const std::string path = dir.filePath(QStringLiteral("a.tokens")).toStdString();
    s.save(path);
    const TokenShard back = TokenShard::load(path);
    QCOMPARE(back.vocab_size, 300u);
    QVERIFY(back.tokens == s.tokens);
    // Truncated.
    std::string bytes;
    {
      std::ifstream in(path, std::ios::binary);
      bytes.assign(std::istreambuf_iterator<char>(in), {});
    }
    auto write = [&](const std::string& b) {
      std::ofstream out(path, std::ios::binary | std::ios::trunc);
      out << b;
    };
    write(bytes.substr(0, bytes.size() - 3));
    QVERIFY_THROWS_EXCEPTION(FormatError, TokenShard::load(path));
    write("not a shard at all, just text");
    QVERIFY_THROWS_EXCEPTION(FormatError, TokenShard::load(path));
    std::string over = bytes;
    over[over.size() - 1] = static_cast<char>(0x7f);  // last id becomes >= 300
    write(over);
    try {
      TokenShard::load(path);
      QFAIL("an id outside the vocabulary was accepted");
    } catch (const FormatError& e) {
      QVERIFY(QString::fromStdString(e.what()).contains(QStringLiteral("outside the vocabulary")));
    }
  }

  void tinyRunLowersTheLoss() {
    QTemporaryDir dir;
    writeShards(dir.path());
    std::vector<double> losses;
    TrainOptions o = tinyRun(dir.path(), dir.filePath(QStringLiteral("run")), 40);
    o.eval_every = 40;
    double eval_loss = 0;
    train_model(o, [&](const TrainProgress& p) {
      losses.push_back(p.loss);
      if (!std::isnan(p.eval_loss)) eval_loss = p.eval_loss;
      return true;
    });
    QCOMPARE(losses.size(), size_t{40});
    double first = 0, last = 0;
    for (int i = 0; i < 5; ++i) { first += losses[i] / 5; last += losses[35 + i] / 5; }
    qInfo("mean loss, first 5 steps %.3f, last 5 steps %.3f, held-out %.3f", first, last, eval_loss);
    QVERIFY2(last < first - 0.5, "the loss did not fall by at least half a nat");
    QVERIFY(std::isfinite(eval_loss) && eval_loss < first);
    QVERIFY(QFile::exists(dir.filePath(QStringLiteral("run/model.safetensors"))));
    QVERIFY(QFile::exists(dir.filePath(QStringLiteral("run/metrics.csv"))));
  }

  void resumeContinuesBitForBit() {
    QTemporaryDir dir;
    writeShards(dir.path());
    std::vector<double> straight, resumed;
    TrainOptions a = tinyRun(dir.path(), dir.filePath(QStringLiteral("a")), 14);
    train_model(a, [&](const TrainProgress& p) { straight.push_back(p.loss); return true; });
    TrainOptions b = tinyRun(dir.path(), dir.filePath(QStringLiteral("b")), 14);
    // Stop after 8 steps (as Ctrl-C would: a checkpoint is saved), then resume to 14.
    train_model(b, [&](const TrainProgress& p) { resumed.push_back(p.loss); return p.step < 8; });
    QCOMPARE(resumed.size(), size_t{8});
    b.resume = true;
    train_model(b, [&](const TrainProgress& p) { resumed.push_back(p.loss); return true; });
    QCOMPARE(resumed.size(), straight.size());
    for (size_t i = 0; i < straight.size(); ++i) QCOMPARE(resumed[i], straight[i]);  // exact
    // A missing training state is refused with its name.
    TrainOptions c = tinyRun(dir.path(), dir.filePath(QStringLiteral("nothing")), 4);
    c.resume = true;
    QVERIFY_THROWS_EXCEPTION(std::exception, train_model(c));
  }
};

QTEST_MAIN(TestTrainer)
#include "test_trainer.moc"
