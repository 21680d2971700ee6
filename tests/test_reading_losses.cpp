// The memory's reading losses on a batch: each row's figures are the same alone and in a batch,
// the reads that choose a fact's value by its label weigh as told and report their own
// attention, and the quiet loss keeps the tokens no other loss lifts under the note threshold,
// reference marks' numbers among them; blind rows hide what a context past the SSM's horizon
// would.
#include <QtTest/QtTest>

#include <torch/torch.h>

#include <algorithm>
#include <cmath>
#include <utility>
#include <vector>

#include "model/memmamba.h"
#include "model/tokenizer.h"
#include "model/train/token_shards.h"
#include "model/train/train_options.h"
#include "model/train/losses.h"
#include "model/train/training_rows.h"
#include "tests/test_helpers.h"

using namespace memmamba;

namespace {
// A tiny memory model that notes nearly every token, so that a read's target notes are visible,
// and reads where I_t > tau_retrieve; with `rows` random rows of 49 tokens from `seed`.
struct ReadingSetup {
  MemMambaModel model;
  torch::Tensor tokens;
};
ReadingSetup reading_setup(double tau_retrieve, uint64_t seed, int64_t rows,
                           ImportanceRule rule = ImportanceRule::Novelty) {
  ModelConfig c = testing::tiny_config();
  c.importance = rule;
  c.pool_slots = 64;
  c.tau_note = 0.01;
  c.tau_retrieve = tau_retrieve;
  MemMambaModel model = MemMambaModel::random(c, seed);
  torch::manual_seed(static_cast<int64_t>(seed));
  return {std::move(model), torch::randint(0, c.vocab_size, {rows, 49}, torch::kInt64)};
}

// Each layer's importances [rows, T] over `tokens` [rows, T + 1] (undefined for a layer without a
// memory): what the losses see.
std::vector<torch::Tensor> layer_importances(const MemMambaModel& model, const torch::Tensor& tokens) {
  const int64_t T = tokens.size(1) - 1;
  std::vector<torch::Tensor> importance(static_cast<size_t>(model.config().n_layers));
  torch::NoGradGuard no_grad;
  RunState state = model.new_state(tokens.size(0));
  RunOptions o = model.default_options();
  o.chunk_tokens = T;
  o.on_importance = [&](int64_t layer, int64_t, const torch::Tensor& i) { importance[layer] = i.to(torch::kFloat32); };
  model.forward(tokens.narrow(1, 0, T), state, o);
  return importance;
}

// The quiet loss's value over the tokens of `mask` [rows, T]: the layers' mean of
// max(0, I_t - (tau1 - 0.05)) averaged over those tokens.
double quiet_hinge(const std::vector<torch::Tensor>& importance, const torch::Tensor& mask, double tau) {
  double sum = 0;
  int layers = 0;
  for (const auto& i : importance) {
    if (!i.defined()) continue;
    sum += ((torch::relu(i - (tau - 0.05)) * mask).sum() / mask.sum()).item<double>();
    ++layers;
  }
  return layers > 0 ? sum / layers : std::nan("");
}

// A shard of the sample tokenizer's tokens for book rows (the row text is not read), and options
// that make rows of `seq_len` tokens with passkey rows from the sample tokenizer.
TokenShard patterned_shard() {
  TokenShard train;
  train.vocab_size = 8192;
  for (int i = 0; i < 6000; ++i) train.tokens.push_back(static_cast<uint16_t>(100 + (i * 37) % 5000));
  return train;
}
TrainOptions row_options(int64_t seq_len, int64_t seed, double passkey_fraction) {
  TrainOptions o;
  o.seq_len = seq_len;
  o.seed = seed;
  o.passkey_tokenizer = std::string(MEMMAMBA_SOURCE_DIR) + "/sample_data/tokenizer.model";
  o.passkey_fraction = passkey_fraction;
  return o;
}
}  // namespace

class TestReadingLosses : public QObject {
  Q_OBJECT

 private Q_SLOTS:
  // The memory's losses tap the whole batch at once (row b * T + t): a row's figures are the
  // same alone and as the second row of a batch.
  void batchLossesAreEachRowsLosses() {
    // Some rows read (tau2 0.5): the CPU computes only those, so the tap holds a subset.
    const auto [model, tokens] = reading_setup(0.5, 13, 2);
    RetrievalTargets alone;
    alone.row = {0, 0, 0};
    alone.query = {30, 31, 32};
    alone.first = {10, 11, 12};
    alone.second = {20, 21, -1};
    alone.other_value_row = {0};
    alone.other_value_position = {5};
    RetrievalTargets second = alone;
    for (auto* rows : {&second.row, &second.other_value_row}) std::fill(rows->begin(), rows->end(), 1);
    const LossWeights weights{1, 1, 1};
    const SequenceLoss a = sequence_loss(model, tokens.narrow(0, 0, 1), &alone, weights);
    const SequenceLoss b = sequence_loss(model, torch::stack({tokens[1], tokens[0]}), &second, weights);
    qInfo("coverage %.2f retrieval %.3f", a.coverage, a.retrieval);
    QVERIFY(a.coverage > 0 && std::isfinite(a.retrieval) && std::isfinite(a.note) && std::isfinite(a.answer));
    for (auto [x, y] : {std::pair{a.retrieval, b.retrieval}, std::pair{a.key_attention, b.key_attention},
                        std::pair{a.coverage, b.coverage}, std::pair{a.note, b.note}, std::pair{a.key_noted, b.key_noted},
                        std::pair{a.answer, b.answer}})
      QVERIFY2(std::abs(x - y) <= 1e-5 * (1 + std::abs(x)), qPrintable(QString("%1 alone, %2 in a batch").arg(x).arg(y)));
  }

  // The reads that choose a fact's value by its label (RetrievalTargets::choice) weigh W times
  // the others in the retrieval and answer losses' means, and report their own attention.
  void choiceReadsWeighMoreAndReportTheirAttention() {
    // Every row reads (tau2 -1): every target is used, so the means are exact.
    const auto [model, tokens] = reading_setup(-1.0, 17, 1);
    RetrievalTargets mixed;
    mixed.row = {0, 0, 0};
    mixed.query = {30, 31, 32};
    mixed.first = {10, 11, 12};
    mixed.second = {20, 21, -1};
    mixed.choice = {1, 0, 0};
    RetrievalTargets chooses, follows;
    chooses.row = {0};
    chooses.query = {30};
    chooses.first = {10};
    chooses.second = {20};
    chooses.choice = {1};
    follows.row = {0, 0};
    follows.query = {31, 32};
    follows.first = {11, 12};
    follows.second = {21, -1};
    LossWeights weights{1, 1, 0};
    const SequenceLoss one = sequence_loss(model, tokens, &chooses, weights);
    const SequenceLoss rest = sequence_loss(model, tokens, &follows, weights);
    const SequenceLoss even = sequence_loss(model, tokens, &mixed, weights);
    weights.choice = 5;
    const SequenceLoss heavy = sequence_loss(model, tokens, &mixed, weights);
    QVERIFY2(one.coverage == 1 && rest.coverage == 1 && even.coverage == 1, "every target read");
    qInfo("retrieval: choice %.4f rest %.4f even %.4f heavy %.4f", one.retrieval, rest.retrieval, even.retrieval,
          heavy.retrieval);
    const auto mean = [](double choice, double others, double w) { return (w * choice + 2 * others) / (w + 2); };
    QVERIFY(std::abs(one.retrieval - rest.retrieval) > 1e-3);  // the weighting is visible
    QVERIFY(std::abs(even.retrieval - mean(one.retrieval, rest.retrieval, 1)) < 1e-5);
    QVERIFY(std::abs(heavy.retrieval - mean(one.retrieval, rest.retrieval, 5)) < 1e-5);
    QVERIFY(std::abs(heavy.answer - mean(one.answer, rest.answer, 5)) < 1e-5);
    // The choice's attention is that read's alone; without a choice read there is none.
    QVERIFY(std::abs(heavy.choice_attention - one.key_attention) < 1e-6);
    QVERIFY(std::isnan(rest.choice_attention));
    // An answer's end piece weighs --end-weight against a key piece in the answer loss.
    RetrievalTargets ended = follows;
    ended.end_row = {0};
    ended.end_query = {33};
    weights.choice = 1;
    const SequenceLoss end_even = sequence_loss(model, tokens, &ended, weights);
    weights.answer_end = 4;
    const SequenceLoss end_heavy = sequence_loss(model, tokens, &ended, weights);
    const double end_alone = 3 * end_even.answer - 2 * rest.answer;  // (2 keys + 1 end) / 3
    QVERIFY(std::abs(end_alone - rest.answer) > 1e-3);
    QVERIFY2(std::abs(end_heavy.answer - (2 * rest.answer + 4 * end_alone) / 6) < 1e-4,
             qPrintable(QString("%1 against %2").arg(end_heavy.answer).arg((2 * rest.answer + 4 * end_alone) / 6)));
  }

  // The quiet loss is the layers' mean of max(0, I_t - (tau1 - 0.05)) over the tokens that the
  // selection loss does not lift, and gradient steps on it alone lower the stray note rate.
  void quietLossKeepsTheUnliftedTokensUnderTheNoteThreshold() {
    auto [model, tokens] = reading_setup(-1.0, 19, 2, ImportanceRule::Learned);
    const int64_t T = tokens.size(1) - 1;
    RetrievalTargets targets;
    targets.row = {0, 1};
    targets.query = {30, 30};
    targets.first = {10, 12};
    targets.second = {-1, -1};
    targets.other_value_row = {1};
    targets.other_value_position = {5};
    // The importances the loss sees, and its tokens: all but the three lifted ones.
    const std::vector<torch::Tensor> importance = layer_importances(model, tokens);
    auto quiet_tokens = torch::ones({2, T});
    quiet_tokens[0][10] = 0;
    quiet_tokens[1][12] = 0;
    quiet_tokens[1][5] = 0;
    const double expected = quiet_hinge(importance, quiet_tokens, model.config().tau_note);
    QVERIFY(!std::isnan(expected));
    LossWeights weights;
    weights.quiet = 2;
    const SequenceLoss first = sequence_loss(model, tokens, &targets, weights);
    qInfo("quiet %.5f (expected %.5f), stray notes %.3f", first.quiet, expected, first.stray_noted);
    QVERIFY(std::abs(first.quiet - expected) < 1e-5);
    QVERIFY(std::abs((first.total - first.lm).item<double>() - 2 * first.quiet) < 1e-5);
    QVERIFY2(first.stray_noted > 0.5, "the untrained rule notes most tokens at tau1 0.01");
    // Off without a weight.
    QVERIFY(std::isnan(sequence_loss(model, tokens, &targets, LossWeights{}).quiet));
    // Steps on the quiet loss alone teach the learned rule to note fewer tokens.
    model.mutable_weights().set_requires_grad(true);
    torch::optim::SGD sgd(model.weights().parameters(), torch::optim::SGDOptions(0.5));
    SequenceLoss last = first;
    for (int step = 0; step < 30; ++step) {
      sgd.zero_grad();
      last = sequence_loss(model, tokens, &targets, weights);
      (last.total - last.lm.detach()).backward();
      sgd.step();
    }
    qInfo("after 30 steps: quiet %.5f, stray notes %.3f", last.quiet, last.stray_noted);
    QVERIFY(last.quiet < 0.5 * first.quiet);
    QVERIFY(last.stray_noted < first.stray_noted);
  }

  // Reference marks' numbers (RetrievalTargets::mark_row) are quiet tokens even where the
  // surprise loss would lift them, and their own mean is a second quiet term of the same weight.
  void referenceMarksStayQuietEvenWhereSurprising() {
    auto [model, tokens] = reading_setup(-1.0, 23, 2, ImportanceRule::Learned);
    const int64_t T = tokens.size(1) - 1, warmup = std::min<int64_t>(64, T / 4);
    const std::vector<torch::Tensor> importance = layer_importances(model, tokens);
    RetrievalTargets targets;
    targets.mark_row = {0, 0, 1};
    targets.mark_position = {20, 21, 40};
    auto marks = torch::zeros({2, T});
    marks[0][20] = 1;
    marks[0][21] = 1;
    marks[1][40] = 1;
    // Every token past the warm-up is surprising (share 1): the quiet ones are the warm-up's and
    // the marks, which the surprise loss no longer lifts.
    auto warm = torch::arange(T).lt(warmup).to(torch::kFloat32).unsqueeze(0).expand({2, T});
    auto quiet_tokens = torch::clamp_max(warm + marks, 1.0);
    auto surprising = 1.0 - warm - marks;
    const double tau = model.config().tau_note;
    auto hinge_mean = [&](const torch::Tensor& mask) { return quiet_hinge(importance, mask, tau); };
    auto noted_share = [&](const torch::Tensor& mask) {
      double noted = 0;
      int layers = 0;
      for (const auto& i : importance) {
        if (!i.defined()) continue;
        noted += (i.gt(tau).to(torch::kFloat32) * mask).sum().item<double>();
        ++layers;
      }
      return noted / (mask.sum().item<double>() * layers);
    };
    LossWeights weights;
    weights.quiet = 2;
    weights.surprise_note = 1;
    weights.surprise_share = 1.0;
    const SequenceLoss with_marks = sequence_loss(model, tokens, &targets, weights);
    qInfo("quiet %.5f (expected %.5f), marks %.5f (expected %.5f), marks noted %.3f, surprising noted %.3f",
          with_marks.quiet, hinge_mean(quiet_tokens), with_marks.mark_quiet, hinge_mean(marks), with_marks.marks_noted,
          with_marks.surprising_noted);
    QVERIFY(std::abs(with_marks.quiet - hinge_mean(quiet_tokens)) < 1e-5);
    QVERIFY(std::abs(with_marks.mark_quiet - hinge_mean(marks)) < 1e-5);
    QVERIFY(with_marks.mark_quiet > 0);  // the untrained rule notes nearly everything at tau1 0.01
    QVERIFY(std::abs(with_marks.marks_noted - noted_share(marks)) < 1e-6);
    QVERIFY(std::abs(with_marks.surprising_noted - noted_share(surprising)) < 1e-6);
    // Without marks those tokens are surprising, not quiet, and there is no second term.
    const SequenceLoss without = sequence_loss(model, tokens, nullptr, weights);
    QVERIFY(std::abs(without.quiet - hinge_mean(warm.contiguous())) < 1e-5);
    QVERIFY(std::isnan(without.mark_quiet));
    QVERIFY(std::isnan(without.marks_noted));
    // The marks' term adds to the total with the quiet weight.
    QVERIFY(std::abs((with_marks.total - without.total).item<double>() -
                     (2 * (with_marks.quiet - without.quiet + with_marks.mark_quiet) +
                      (with_marks.surprise_note - without.surprise_note))) < 1e-5);
  }

  // Reference marks' targets are the tokens of the marks' numbers, and a batch with marks has
  // them in its passkey rows only.
  void referenceMarkTargetsAreTheMarksNumbers() {
    const Tokenizer tok = Tokenizer::load(std::string(MEMMAMBA_SOURCE_DIR) + "/sample_data/tokenizer.model");
    const eval::PasskeyGenerator gen(tok, {}, eval::Haystack::RepeatedFiller);
    eval::CaseSpec spec;
    spec.reference_marks = 20;
    size_t marks = 0;
    for (uint64_t seed : {1u, 2u, 3u}) {
      const eval::PasskeyCase c = gen.make(1200, 0.5, seed, spec);
      marks += c.marks.size();
      const std::string text = passkey_training_text(c);
      const Encoding enc = tok.encode(text);
      const int64_t shift = 7, row_length = static_cast<int64_t>(enc.ids.size()) + shift;
      RetrievalTargets t;
      add_mark_positions(c, enc, 2, row_length, t);
      QCOMPARE(t.mark_row.size(), t.mark_position.size());
      QVERIFY(t.mark_position.size() >= c.marks.size());
      for (size_t i = 0; i < t.mark_position.size(); ++i) {
        QCOMPARE(t.mark_row[i], int64_t{2});
        const int64_t k = t.mark_position[i] - shift;
        const std::string piece = text.substr(static_cast<size_t>(enc.begin[k]), static_cast<size_t>(enc.end[k] - enc.begin[k]));
        QVERIFY2(std::any_of(piece.begin(), piece.end(), [](char ch) { return ch >= '0' && ch <= '9'; }),
                 qPrintable(QString::fromStdString("a mark target without a digit: \"" + piece + "\"")));
      }
      // Every digit of every mark is covered.
      for (const auto& [begin, end] : c.marks)
        for (int64_t b = begin; b < end; ++b) {
          bool covered = false;
          for (int64_t pos : t.mark_position)
            covered = covered || (enc.begin[pos - shift] <= b && b < enc.end[pos - shift]);
          QVERIFY(covered);
        }
    }
    QVERIFY2(marks >= 6, qPrintable(QString("%1 marks in three cases at 20 per 1,000 tokens").arg(marks)));
    const TokenShard train = patterned_shard();
    TrainOptions o = row_options(256, 5, 0.5);
    o.reference_marks = 30;
    const BatchMaker maker(o, train, 6);
    RetrievalTargets targets;
    int passkeys = 0;
    maker.make(3, 0, 8, &passkeys, &targets);
    QVERIFY(passkeys > 0 && passkeys < 8);
    QVERIFY(!targets.mark_row.empty());
    for (int64_t r : targets.mark_row)
      QVERIFY2(std::find(targets.row.begin(), targets.row.end(), r) != targets.row.end(), "a mark in a row without a key");
    // Without marks, the same rows bring no mark targets.
    o.reference_marks = 0;
    RetrievalTargets plain;
    BatchMaker(o, train, 6).make(3, 0, 8, nullptr, &plain);
    QVERIFY(plain.mark_row.empty());
    QCOMPARE(plain.row.size(), targets.row.size());
  }

  // A blind row hides the asked value, or with blind_every_fact every labelled fact's value (and
  // no label), as a context past the SSM's horizon does; the rows themselves stay the same.
  void blindRowsHideEveryFactsValue() {
    const Tokenizer tok = Tokenizer::load(std::string(MEMMAMBA_SOURCE_DIR) + "/sample_data/tokenizer.model");
    const eval::PasskeyGenerator gen(tok, {}, eval::Haystack::RepeatedFiller);
    eval::CaseSpec spec;
    spec.facts = 4;
    spec.wordings = eval::parse_wordings("trained", true);
    for (uint64_t seed : {1u, 2u, 3u}) {
      const eval::PasskeyCase c = gen.make(1500, 0.5, seed, spec);
      QCOMPARE(c.needles.size(), size_t{4});
      const Encoding enc = tok.encode(passkey_training_text(c));
      const int64_t shift = 9, row_length = static_cast<int64_t>(enc.ids.size()) + shift, margin = 3;
      const auto asked = blind_needle_spans(c, enc, row_length, margin, false);
      QCOMPARE(asked.size(), size_t{1});
      QCOMPARE(asked[0], blind_needle_span(c, enc, row_length, margin));
      const auto every = blind_needle_spans(c, enc, row_length, margin, true);
      QCOMPARE(every.size(), c.needles.size());
      QVERIFY(std::find(every.begin(), every.end(), asked[0]) != every.end());
      auto hidden = [&](int64_t byte) {
        for (const auto& [begin, end] : every)
          for (int64_t pos = begin; pos < end; ++pos)
            if (enc.begin[pos - shift] <= byte && byte < enc.end[pos - shift]) return true;
        return false;
      };
      for (const eval::NeedleInfo& needle : c.needles) {
        const auto value = static_cast<int64_t>(c.prompt.find(needle.value, static_cast<size_t>(needle.begin)));
        QVERIFY(value >= needle.begin && value < needle.end);
        for (int64_t b = value; b < value + static_cast<int64_t>(needle.value.size()); ++b)
          QVERIFY2(hidden(b), qPrintable(QString::fromStdString("a digit of " + needle.value + " stays visible")));
        const auto label = static_cast<int64_t>(c.prompt.find(needle.label, static_cast<size_t>(needle.begin)));
        QVERIFY(label >= needle.begin && label < value);
        QVERIFY2(!hidden(label), qPrintable(QString::fromStdString("the label " + needle.label + " is hidden")));
      }
    }
    // In a batch: the same rows, every span the asked-only mask hides still hidden, and more.
    const TokenShard train = patterned_shard();
    TrainOptions o = row_options(1024, 8, 1);
    o.varied_cases = true;
    o.case_mix = "facts";
    o.blind_needle_fraction = 1;
    torch::Tensor asked_mask, every_mask;
    const torch::Tensor rows = BatchMaker(o, train, 6).make(2, 0, 8, nullptr, nullptr, &asked_mask);
    o.blind_every_fact = true;
    QVERIFY(torch::equal(BatchMaker(o, train, 6).make(2, 0, 8, nullptr, nullptr, &every_mask), rows));
    QVERIFY(asked_mask.defined() && every_mask.defined());
    QVERIFY(torch::equal(every_mask * asked_mask, every_mask));  // hidden by one, hidden by the other
    QVERIFY2(every_mask.sum().item<double>() < asked_mask.sum().item<double>(), "no fact row in 8 rows");
  }
};

QTEST_APPLESS_MAIN(TestReadingLosses)
#include "test_reading_losses.moc"
