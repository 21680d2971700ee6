// The surprise selection loss: its targets are the tokens the model found hardest to predict
// (the loss of predicting token t sits at t - 1), never the warm-up, and its gradient teaches
// the learned note rule (the bundled model's) to note those tokens and leave the predictable ones.
#include <QTemporaryDir>
#include <QtTest/QtTest>

#include <fstream>
#include <string>

#include "model/memmamba.h"
#include "model/train/losses.h"
#include "model/train/token_shards.h"
#include "model/train/trainer.h"
#include "tests/test_helpers.h"

using namespace memmamba;

class TestSurpriseNotes : public QObject {
  Q_OBJECT
 private Q_SLOTS:
  void surprisingTokensAreTheHardestToPredict() {
    // Row 0: the losses at 9 and 14 are the largest, so tokens 10 and 15 surprise; the loss at
    // 2 is larger still but predicts token 3, inside the warm-up of 4 tokens.
    auto nll = torch::full({2, 20}, 1.0);
    nll[0][2] = 9.0;
    nll[0][9] = 5.0;
    nll[0][14] = 6.0;
    nll[1][19] = 7.0;  // predicts a token past the row: never a target
    nll[1][5] = 3.0;
    auto picked = surprising_tokens(nll, 0.125, 4);  // 16 candidates x 0.125 = 2 a row
    QCOMPARE(picked.sum(1)[0].item<int64_t>(), int64_t{2});
    QCOMPARE(picked.sum(1)[1].item<int64_t>(), int64_t{2});
    QVERIFY(picked[0][10].item<bool>() && picked[0][15].item<bool>());
    QVERIFY(!picked[0][3].item<bool>());
    QVERIFY(picked[1][6].item<bool>());
    QVERIFY(!picked.narrow(1, 0, 4).any().item<bool>());
    // However small the share, each row gets one target; a row shorter than its warm-up none.
    QCOMPARE(surprising_tokens(nll, 1e-4, 4).sum().item<int64_t>(), int64_t{2});
    QCOMPARE(surprising_tokens(torch::ones({1, 3}), 0.5, 4).sum().item<int64_t>(), int64_t{0});
  }

  void surpriseLossTeachesTheSelection() {
    ModelConfig c = testing::tiny_config();
    c.pool_slots = 64;
    c.tau_note = 0.5;
    c.summary_dim = 16;
    c.importance = ImportanceRule::Learned;
    MemMambaModel model = MemMambaModel::random(c, 11);
    model.mutable_weights().set_requires_grad(true);
    // Two rows of a repeating phrase broken every 16 tokens by a token it cannot predict.
    std::vector<int64_t> ids;
    for (int r = 0; r < 2; ++r)
      for (int i = 0; i < 129; ++i) ids.push_back(i % 16 == 11 ? 40 + i / 16 + r * 8 : i % 8);
    auto batch = torch::tensor(ids, torch::kInt64).view({2, 129});
    // First the model learns the phrase, so that the breaks are what surprises it.
    torch::optim::Adam lm(model.weights().parameters(), torch::optim::AdamOptions(1e-2));
    for (int step = 0; step < 120; ++step) {
      lm.zero_grad();
      sequence_loss(model, batch).total.backward();
      lm.step();
    }
    const LossWeights weights{0, 0, 0, 0.05, 1.0, 0.06, 0.3};  // 6 of the 97 tokens past the warm-up, a row
    SequenceLoss first = sequence_loss(model, batch, nullptr, weights);
    QVERIFY(first.lm.item<double>() < 1.5);
    QVERIFY(std::isfinite(first.surprise_note) && first.surprise_note > 0);
    QVERIFY(std::abs((first.total - first.lm).item<double>() - first.surprise_note) < 1e-5);  // added with its weight
    {
      torch::NoGradGuard no_grad;
      RunState state = model.new_state(2);
      auto logits = model.logits(model.forward(batch.narrow(1, 0, 128), state, model.default_options()));
      auto nll = torch::nn::functional::cross_entropy(
          logits.reshape({-1, c.vocab_size}), batch.narrow(1, 1, 128).reshape({-1}),
          torch::nn::functional::CrossEntropyFuncOptions().reduction(torch::kNone));
      auto picked = surprising_tokens(nll.view({2, 128}), 0.06, 32);
      auto breaks = batch.narrow(1, 0, 128).ge(40);
      QCOMPARE((picked & breaks).sum().item<int64_t>(), picked.sum().item<int64_t>());  // only the breaks
    }
    // Then the note rule alone learns the selection.
    std::vector<torch::Tensor> rule;
    for (int64_t l = 0; l < c.n_layers; ++l)
      for (const char* w : {".note.importance.weight", ".note.importance.bias"})
        rule.push_back(model.weights()["layers." + std::to_string(l) + w]);
    torch::optim::Adam select(rule, torch::optim::AdamOptions(2e-2));
    for (int step = 0; step < 150; ++step) {
      select.zero_grad();
      SequenceLoss l = sequence_loss(model, batch, nullptr, weights);
      (l.total - l.lm).backward();
      select.step();
    }
    SequenceLoss last = sequence_loss(model, batch, nullptr, weights);
    qInfo("surprise loss %.3f -> %.3f; surprising noted %.2f -> %.2f; predictable noted %.2f -> %.2f",
          first.surprise_note, last.surprise_note, first.surprising_noted, last.surprising_noted,
          first.predictable_noted, last.predictable_noted);
    // The learned rule is a smooth function of the token's features, so the fall is large on
    // every build (the novelty rule's importance jumps with the pool's contents: with it this
    // check depended on the float order of the CPU). The selection it teaches carries the margin.
    QVERIFY(last.surprise_note < 0.5 * first.surprise_note);
    QVERIFY(last.surprising_noted - last.predictable_noted > first.surprising_noted - first.predictable_noted + 0.5);
    QVERIFY(std::isnan(sequence_loss(model, batch).surprise_note));  // off: not computed
  }

  void trainerLogsTheSurpriseLoss() {
    QTemporaryDir dir;
    TokenShard train, held;
    train.vocab_size = held.vocab_size = 64;
    for (int i = 0; i < 4000; ++i) train.tokens.push_back(static_cast<uint16_t>(i % 16 == 5 ? 30 + i % 29 : i % 8));
    held.tokens.assign(train.tokens.begin(), train.tokens.begin() + 600);
    train.save(dir.filePath(QStringLiteral("train.tokens")).toStdString());
    held.save(dir.filePath(QStringLiteral("heldout.tokens")).toStdString());
    TrainOptions o;
    o.data_dir = dir.path().toStdString();
    o.out_dir = dir.filePath(QStringLiteral("run")).toStdString();
    o.config = testing::tiny_config();
    o.seq_len = 64;
    o.batch = 2;
    o.steps = 2;
    o.eval_every = 0;
    o.checkpoint_every = 0;
    o.passkey_fraction = 0;
    o.surprise_note_weight = 1;
    o.surprise_note_share = 0.05;
    std::vector<TrainProgress> steps;
    train_model(o, [&](const TrainProgress& p) { steps.push_back(p); return true; });
    QCOMPARE(steps.size(), size_t{2});
    for (const TrainProgress& p : steps) {
      QVERIFY(std::isfinite(p.surprise_loss) && p.surprise_loss >= 0);
      QVERIFY(p.surprising_noted >= 0 && p.surprising_noted <= 1 && p.predictable_noted >= 0 && p.predictable_noted <= 1);
    }
    // The log's row has the three figures in their columns (found by the header's names).
    std::ifstream csv(dir.filePath(QStringLiteral("run/metrics.csv")).toStdString());
    std::string header, line;
    std::getline(csv, header);
    std::getline(csv, line);
    const QStringList names = QString::fromStdString(header).split(QLatin1Char(','));
    const QStringList values = QString::fromStdString(line).split(QLatin1Char(','));
    QCOMPARE(values.size(), names.size());
    for (const char* column : {"surprise_loss", "surprising_noted", "predictable_noted"}) {
      const qsizetype at = names.indexOf(QLatin1String(column));
      QVERIFY2(at >= 0, column);
      bool number = false;
      const double value = values[at].toDouble(&number);
      QVERIFY2(number && std::isfinite(value), qPrintable(QString("%1 = %2").arg(column, values[at])));
    }
    QCOMPARE(values[names.indexOf(QLatin1String("quiet_loss"))], QStringLiteral("nan"));  // off in this run
  }
};

QTEST_MAIN(TestSurpriseNotes)
#include "test_surprise_notes.moc"
