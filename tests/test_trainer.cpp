// The trainer: shards round-trip and refuse corrupt files; a tiny CPU run lowers the loss;
// resuming from a checkpoint continues with exactly the losses of an uninterrupted run; the
// retrieval loss points at the key's notes, and its gradient teaches the pool attention; a
// blind needle hides the key from the SSM.
#include <QDir>
#include <QFile>
#include <QTemporaryDir>
#include <QtTest/QtTest>

#include <algorithm>
#include <cstdio>
#include <fstream>
#include <random>
#include <vector>

#include "model/checkpoint.h"
#include "model/memmamba.h"
#include "model/safetensors.h"
#include "model/text_input.h"
#include "model/train/losses.h"
#include "model/train/optimizer.h"
#include "model/train/token_shards.h"
#include "model/train/trainer.h"
#include "model/train/training_rows.h"
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
  // Rows of 256 tokens that are all passkey examples (sample tokenizer), read at every token.
  static TrainOptions passkeyRun(const QString& data, const QString& out, int64_t steps) {
    TrainOptions o = tinyRun(data, out, steps);
    o.config.vocab_size = 8192;  // passkey rows use the sample tokenizer
    o.config.tau_retrieve = -1;
    o.seq_len = 256;
    o.batch = 2;
    o.accumulation = 1;
    o.passkey_fraction = 1;
    o.passkey_tokenizer = std::string(MEMMAMBA_SOURCE_DIR) + "/sample_data/tokenizer.model";
    return o;
  }


 private Q_SLOTS:
  // The sample and evaluation books never reach a training shard, whatever else is held out.
  void evaluationBooksStayOutOfTheShards() {
    QTemporaryDir dir;
    const Tokenizer tok = Tokenizer::load(std::string(MEMMAMBA_SOURCE_DIR) + "/sample_data/tokenizer.model");
    const QStringList names = {QStringLiteral("The-Time-Machine_35.txt"), QStringLiteral("The-Iliad_6130.txt"),
                               QStringLiteral("Emma_158.txt"), QStringLiteral("Dubliners_2814.txt"), QStringLiteral("Kidnapped_421.txt")};
    QDir(dir.path()).mkdir(QStringLiteral("books"));
    for (const QString& n : names) {
      QFile f(dir.filePath(QStringLiteral("books/") + n));
      QVERIFY(f.open(QIODevice::WriteOnly));
      f.write(QStringLiteral("The text of %1, which is a book of some length. ").arg(n).repeated(20).toUtf8());
    }
    auto split = [&](DataSplitOptions o) {
      const Json m = build_token_shards(tok, dir.filePath(QStringLiteral("books")).toStdString(),
                                        dir.filePath(QStringLiteral("shards")).toStdString(), o);
      QStringList held;
      for (const Json& b : m.at("heldout_books").as_array()) held << QString::fromStdString(b.at("book").as_string());
      held.sort();
      return held;
    };
    QCOMPARE(split(DataSplitOptions{}), (QStringList{QStringLiteral("The-Iliad_6130.txt"), QStringLiteral("The-Time-Machine_35.txt")}));
    DataSplitOptions more;
    more.heldout_books = 1;
    const QStringList three = split(more);
    QCOMPARE(three.size(), 3);
    QVERIFY(three.contains(QStringLiteral("The-Time-Machine_35.txt")) && three.contains(QStringLiteral("The-Iliad_6130.txt")));
    more.heldout_books = 3;  // would leave no training book
    QVERIFY_THROWS_EXCEPTION(std::invalid_argument, split(more));
    for (const std::string& n : evaluation_books()) QVERIFY(QString::fromStdString(n).endsWith(QStringLiteral(".txt")));
  }

  // Training rows never use a held-out wording; the passkey mix is one digit key of 3-10
  // digits; the whole mix has facts, words, names and distractors (only with digit keys); the
  // facts mix has digit keys only, with 2-6 facts in some rows; "composed-any" composes as
  // "composed-all" with words and names among its keys.
  void trainingCasesKeepHeldOutWordingsOut() {
    std::mt19937_64 rng(3);
    bool facts = false, words = false, names = false, distractors = false, several_digit_facts = false;
    bool several_composed_facts = false, single_composed_facts = false, composed_labels = false, listed_labels = false;
    bool any_words = false, any_names = false, any_composed_labels = false;
    for (int i = 0; i < 400; ++i) {
      const eval::CaseSpec all = training_case_spec(rng, "all");
      const auto& wordings = all.facts > 1 ? eval::fact_wordings() : eval::passkey_wordings();
      for (int64_t w : all.wordings) QVERIFY(!wordings[static_cast<size_t>(w)].held_out);
      QVERIFY(all.facts >= 1 && all.facts <= 8);
      if (all.distractors > 0) QVERIFY(all.key_kind == eval::KeyKind::Digits);
      facts |= all.facts > 1;
      words |= all.key_kind == eval::KeyKind::Word;
      names |= all.key_kind == eval::KeyKind::Name;
      distractors |= all.distractors > 0;
      const eval::CaseSpec passkey = training_case_spec(rng, "passkey");
      QCOMPARE(passkey.facts, int64_t{1});
      QVERIFY(passkey.key_kind == eval::KeyKind::Digits && passkey.key_digits_min == 3 && passkey.key_digits_max == 10);
      for (int64_t w : passkey.wordings) QVERIFY(!eval::passkey_wordings()[static_cast<size_t>(w)].held_out);
      const eval::CaseSpec digit_facts = training_case_spec(rng, "facts");
      QVERIFY(digit_facts.key_kind == eval::KeyKind::Digits && digit_facts.facts >= 1 && digit_facts.facts <= 6);
      const auto& fact_wordings = digit_facts.facts > 1 ? eval::fact_wordings() : eval::passkey_wordings();
      for (int64_t w : digit_facts.wordings) QVERIFY(!fact_wordings[static_cast<size_t>(w)].held_out);
      several_digit_facts |= digit_facts.facts > 1;
      const eval::CaseSpec composed = training_case_spec(rng, "composed");
      QVERIFY(composed.composed && composed.facts == 1 && composed.key_kind == eval::KeyKind::Digits);
      QVERIFY(!passkey.composed && !all.composed && !digit_facts.composed);
      const eval::CaseSpec composed_facts = training_case_spec(rng, "composed-facts");
      QVERIFY(composed_facts.key_kind == eval::KeyKind::Digits && composed_facts.facts <= 6);
      QCOMPARE(composed_facts.composed, composed_facts.facts == 1);
      several_composed_facts |= composed_facts.facts > 1;
      single_composed_facts |= composed_facts.facts == 1;
      // "composed-all" also composes about half the wordings with labelled facts.
      const eval::CaseSpec composed_all = training_case_spec(rng, "composed-all");
      QVERIFY(composed_all.key_kind == eval::KeyKind::Digits && composed_all.facts <= 6);
      if (composed_all.facts == 1) QVERIFY(composed_all.composed);
      else (composed_all.composed ? composed_labels : listed_labels) = true;
      // "composed-any": composed wordings as composed-all, words and names among the keys.
      const eval::CaseSpec composed_any = training_case_spec(rng, "composed-any");
      QVERIFY(composed_any.facts >= 1 && composed_any.facts <= 8);
      if (composed_any.facts == 1) QVERIFY(composed_any.composed);
      if (composed_any.distractors > 0) QVERIFY(composed_any.key_kind == eval::KeyKind::Digits);
      any_words |= composed_any.key_kind == eval::KeyKind::Word;
      any_names |= composed_any.key_kind == eval::KeyKind::Name;
      any_composed_labels |= composed_any.facts > 1 && composed_any.composed;
      const eval::CaseSpec long_keys = training_case_spec(rng, "composed", {7, 10});
      QVERIFY(long_keys.key_digits_min == 7 && long_keys.key_digits_max == 10);
    }
    QVERIFY(facts && words && names && distractors && several_digit_facts);
    QVERIFY(several_composed_facts && single_composed_facts && composed_labels && listed_labels);
    QVERIFY(any_words && any_names && any_composed_labels);
  }

  // Passkey rows on the shard's own text: the haystack sentences come from the training shard
  // (never from a bundled or evaluation book), and the needle is in the row.
  void shardHaystacksComeFromTheShard() {
    QTemporaryDir dir;
    const std::string tok_path = std::string(MEMMAMBA_SOURCE_DIR) + "/sample_data/tokenizer.model";
    const Tokenizer tok = Tokenizer::load(tok_path);
    const std::string book = load_text_file(std::string(MEMMAMBA_SOURCE_DIR) + "/sample_data/Alice-s-Adventures-in-Wonderland_11.txt");
    TokenShard train, held;
    train.vocab_size = held.vocab_size = static_cast<uint32_t>(tok.vocab_size());
    for (int32_t id : tok.encode(book).ids) train.tokens.push_back(static_cast<uint16_t>(id));
    held.tokens.assign(train.tokens.begin(), train.tokens.begin() + 2000);
    train.save(dir.filePath(QStringLiteral("train.tokens")).toStdString());
    held.save(dir.filePath(QStringLiteral("heldout.tokens")).toStdString());
    TrainOptions o = tinyRun(dir.path(), dir.filePath(QStringLiteral("out")), 1);
    o.config.vocab_size = tok.vocab_size();
    o.seq_len = 600;
    o.passkey_fraction = 1;
    o.passkey_tokenizer = tok_path;
    o.passkey_shard_haystack = true;
    o.varied_cases = true;
    o.case_mix = "passkey";
    const TokenShard loaded = TokenShard::load(dir.filePath(QStringLiteral("train.tokens")).toStdString());
    const BatchMaker rows(o, loaded, 6);
    int keys = 0;
    const torch::Tensor batch = rows.make(0, 0, 3, &keys);
    QCOMPARE(keys, 3);
    int shard_rows = 0;
    for (int64_t r = 0; r < 3; ++r) {
      std::vector<int32_t> ids;
      for (int64_t i = 0; i < batch.size(1); ++i) ids.push_back(static_cast<int32_t>(batch[r][i].item<int64_t>()));
      const std::string text = tok.decode(ids);
      QVERIFY2(text.find("Answer: ") != std::string::npos, qPrintable(QString::fromStdString(text.substr(text.size() - 200))));
      // The sentence just before the question is a haystack sentence (or the needle): one of the
      // shard's. (The tokenizer turns newlines into spaces: the question is found by its words.)
      size_t question = std::string::npos;
      for (const eval::Wording& w : eval::passkey_wordings()) {
        std::string q = w.question;
        q = q.substr(1, q.find('\n', 1) - 1);  // "What is the pass key?"
        const size_t at = text.rfind(q);
        if (at != std::string::npos) question = at;
      }
      QVERIFY(question != std::string::npos);
      const std::string before = text.substr(0, question);
      const size_t start = before.rfind(". ", before.size() - 3);
      const std::string last_sentence = before.substr(start == std::string::npos ? 0 : start + 2);
      QVERIFY2(last_sentence.size() > 10, qPrintable(QString::fromStdString(last_sentence)));
      const std::string probe = last_sentence.substr(0, std::min<size_t>(24, last_sentence.size()));
      bool from_needle = false;
      for (const eval::Wording& w : eval::passkey_wordings()) from_needle |= probe.find(std::string(w.needle).substr(0, 8)) == 0;
      bool from_shard = false;
      for (const std::string& sentence : eval::split_sentences(book)) from_shard |= sentence.find(probe) != std::string::npos;
      QVERIFY2(from_needle || from_shard,
               qPrintable(QString::fromStdString(probe)));
      shard_rows += from_shard;
    }
    QVERIFY(shard_rows > 0);
  }

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

  void frozenFusionScalesStayAsLoaded() {
    QTemporaryDir dir;
    writeShards(dir.path());
    TrainOptions first = tinyRun(dir.path(), dir.filePath(QStringLiteral("first")), 3);
    train_model(first, [](const TrainProgress&) { return true; });
    const std::string start = dir.filePath(QStringLiteral("first/model.safetensors")).toStdString();
    auto run_from_start = [&](const QString& out, bool freeze) {
      TrainOptions o = tinyRun(dir.path(), dir.filePath(out), 5);
      o.init_checkpoint = start;
      o.freeze_fusion_scales = freeze;
      train_model(o, [](const TrainProgress&) { return true; });
      return load_checkpoint((dir.filePath(out) + QStringLiteral("/model.safetensors")).toStdString()).weights;
    };
    const Weights before = load_checkpoint(start).weights, frozen = run_from_start(QStringLiteral("frozen"), true),
                  free = run_from_start(QStringLiteral("free"), false);
    int scales = 0;
    for (const auto& [name, t] : before.all()) {
      const bool is_scale = QString::fromStdString(name).endsWith(QStringLiteral("fusion.scale"));
      scales += is_scale;
      if (is_scale) {
        QVERIFY2(torch::equal(frozen[name], t), name.c_str());
        QVERIFY2(!torch::equal(free[name], t), name.c_str());  // would move if not frozen
      }
    }
    QVERIFY(scales > 0);
    QVERIFY(!torch::equal(frozen["embedding.weight"], before["embedding.weight"]));  // the rest trains
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

  void retrievalTargetsPointAtTheKeyInTheNeedle() {
    const Tokenizer tok = Tokenizer::load(std::string(MEMMAMBA_SOURCE_DIR) + "/sample_data/tokenizer.model");
    const eval::PasskeyGenerator gen(tok, {}, eval::Haystack::RepeatedFiller);
    for (uint64_t seed : {1u, 2u, 3u, 4u}) {
      const eval::PasskeyCase c = gen.make(600, 0.3 + 0.1 * static_cast<double>(seed), seed);
      const std::string key = c.key;
      const std::string text = passkey_training_text(c);
      const Encoding enc = tok.encode(text);
      const auto n = static_cast<int64_t>(enc.ids.size());
      const int64_t row_length = n + 37, shift = 37;  // book text before the example
      RetrievalTargets t;
      add_retrieval_targets(c, enc, 2, row_length, t);
      QVERIFY(!t.row.empty());
      const auto answer = static_cast<int64_t>(c.prompt.size());
      const auto first = static_cast<int64_t>(c.prompt.find(key, static_cast<size_t>(c.needle_begin)));
      const auto second = static_cast<int64_t>(c.prompt.find(key, static_cast<size_t>(first) + key.size()));
      QVERIFY(first > 0 && second > first && second < c.needle_end);
      std::string answered;
      for (size_t i = 0; i < t.row.size(); ++i) {
        QCOMPARE(t.row[i], int64_t{2});
        const int64_t a = t.query[i] + 1 - shift;  // the answer token this position predicts
        QVERIFY(a > 0 && a < n);
        QVERIFY(enc.end[a] > answer && enc.begin[a] < answer + static_cast<int64_t>(key.size()));
        const int64_t offset = std::max(enc.begin[a], answer) - answer;
        answered += text.substr(static_cast<size_t>(answer + offset), 1);
        // Both needle tokens hold the same digit at the same place of the key, before the query.
        for (auto [pos, copy] : {std::pair{t.first[i], first}, std::pair{t.second[i], second}}) {
          QVERIFY(pos >= 0 && pos < t.query[i]);
          const int64_t k = pos - shift;
          QVERIFY(enc.begin[k] <= copy + offset && copy + offset < enc.end[k]);
          QCOMPARE(text[static_cast<size_t>(copy + offset)], key[static_cast<size_t>(offset)]);
        }
      }
      QCOMPARE(answered.front(), key.front());  // the first piece is supervised
      // The answer's end is taught too: one position, predicting the first piece after the key.
      QCOMPARE(t.end_row, std::vector<int64_t>{2});
      QCOMPARE(t.end_query.size(), size_t{1});
      const int64_t after = t.end_query[0] + 1 - shift;
      QVERIFY(after > 0 && after < n);
      QVERIFY(enc.begin[after] >= answer + static_cast<int64_t>(key.size()));
      QVERIFY(enc.begin[after - 1] < answer + static_cast<int64_t>(key.size()));
      QVERIFY(t.end_query[0] > t.query.back());
      QCOMPARE(text.substr(static_cast<size_t>(enc.begin[after])), std::string("."));
      // A row too short to hold the needle gets no targets.
      RetrievalTargets cut;
      const int64_t answer_token = std::upper_bound(enc.end.begin(), enc.end.end(), answer) - enc.end.begin();
      add_retrieval_targets(c, enc, 0, n - answer_token + 3, cut);
      QVERIFY(cut.row.empty());
      // --note-key-end: the end position becomes one more retrieval query, read from the needle's
      // pieces right after each key copy (the key's last digit cannot know that it is the last).
      RetrievalTargets ends;
      add_retrieval_targets(c, enc, 2, row_length, ends, true);
      QVERIFY(ends.end_row.empty() && ends.end_query.empty());
      QCOMPARE(ends.row.size(), t.row.size() + 1);
      QCOMPARE(ends.query.back(), t.end_query[0]);
      QVERIFY(std::equal(t.query.begin(), t.query.end(), ends.query.begin()));
      for (auto [pos, copy] : {std::pair{ends.first.back(), first}, std::pair{ends.second.back(), second}}) {
        QVERIFY(pos >= 0 && pos < ends.query.back());
        const int64_t k = pos - shift;
        const int64_t after_key = copy + static_cast<int64_t>(key.size());
        QVERIFY(enc.begin[k] <= after_key && after_key < enc.end[k]);
        QVERIFY(!std::isdigit(static_cast<unsigned char>(text[static_cast<size_t>(after_key)])));
      }
    }
  }

  // In a row with several facts, the selection loss also gets every fact's value that was not
  // asked (the model cannot know which will be): each token of each such value, none of the
  // asked one's, none in a one-fact row.
  void otherFactsValuesAreSelectionTargets() {
    const Tokenizer tok = Tokenizer::load(std::string(MEMMAMBA_SOURCE_DIR) + "/sample_data/tokenizer.model");
    const eval::PasskeyGenerator gen(tok, {}, eval::Haystack::RepeatedFiller);
    eval::CaseSpec spec;
    spec.facts = 4;
    spec.key_digits_min = 3;
    spec.key_digits_max = 8;
    for (uint64_t seed : {5u, 6u, 7u}) {
      const eval::PasskeyCase c = gen.make(900, 0.5, seed, spec);
      QCOMPARE(c.needles.size(), size_t{4});
      const std::string text = passkey_training_text(c);
      const Encoding enc = tok.encode(text);
      const int64_t shift = 11, row_length = static_cast<int64_t>(enc.ids.size()) + shift;
      RetrievalTargets t;
      add_retrieval_targets(c, enc, 1, row_length, t);
      QCOMPARE(t.other_value_row.size(), t.other_value_position.size());
      std::string covered;  // the bytes of the targeted tokens, per needle
      size_t values_hit = 0;
      for (size_t j = 0; j < c.needles.size(); ++j) {
        const eval::NeedleInfo& n = c.needles[j];
        const auto v = static_cast<int64_t>(c.prompt.find(n.value, static_cast<size_t>(n.begin)));
        bool any = false;
        for (size_t i = 0; i < t.other_value_position.size(); ++i) {
          QCOMPARE(t.other_value_row[i], int64_t{1});
          const int64_t k = t.other_value_position[i] - shift;
          if (enc.end[k] > v && enc.begin[k] < v + static_cast<int64_t>(n.value.size())) any = true;
        }
        if (static_cast<int64_t>(j) == c.asked) {
          QVERIFY2(!any, "the asked value has its own targets");
        } else {
          QVERIFY2(any, qPrintable(QString::fromStdString("no target on " + n.value)));
          ++values_hit;
        }
      }
      QCOMPARE(values_hit, size_t{3});
      // Every targeted token lies inside some other needle's value.
      for (int64_t pos : t.other_value_position) {
        const int64_t k = pos - shift;
        bool inside = false;
        for (size_t j = 0; j < c.needles.size(); ++j) {
          const auto v = static_cast<int64_t>(c.prompt.find(c.needles[j].value, static_cast<size_t>(c.needles[j].begin)));
          inside = inside || (static_cast<int64_t>(j) != c.asked && enc.end[k] > v &&
                              enc.begin[k] < v + static_cast<int64_t>(c.needles[j].value.size()));
        }
        QVERIFY(inside);
      }
    }
    RetrievalTargets single;
    const eval::PasskeyCase one = gen.make(600, 0.5, 3);
    add_retrieval_targets(one, tok.encode(passkey_training_text(one)), 0, 700, single);
    QVERIFY(!single.row.empty());
    QVERIFY(single.other_value_position.empty());
  }

  void attentionTapTeachesTheReadOut() {
    // A loss on the tapped attention weights (as the retrieval loss builds it) moves the
    // attention onto the chosen note; the sources the tap reports are noted, earlier tokens.
    ModelConfig c = testing::tiny_config();
    c.pool_slots = 64;
    c.tau_retrieve = -1;  // always read
    MemMambaModel model = MemMambaModel::random(c, 11);
    std::vector<int64_t> ids;
    for (int i = 0; i < 48; ++i) ids.push_back((i * 37 + 5) % 64);
    auto tokens = torch::tensor(ids, torch::kInt64).view({1, -1});
    const std::string q = "layers.0.token_attention.q.weight", k = "layers.0.token_attention.k.weight";
    for (const std::string& name : {q, k}) model.mutable_weights().set(name, model.weights()[name].clone().set_requires_grad(true));
    const int64_t row = 40;
    int64_t target = -1;
    auto mass_on_target = [&](bool check_sources) {
      torch::Tensor mass;
      RunState state = model.new_state(1);
      RunOptions o = model.default_options();
      o.on_attention = [&](const AttentionTap& tap) {
        if (check_sources) {
          auto rows = tap.rows.view({-1, 1}).expand_as(tap.source);
          QVERIFY(tap.source.lt(rows).logical_or(tap.source.eq(-1)).all().item<bool>());  // causal
          QVERIFY(tap.weights.masked_select(tap.source.eq(-1)).abs().sum().item<double>() < 1e-6);
        }
        if (tap.layer != 0 || tap.cross_layer) return;
        auto r = tap.rows.eq(row).nonzero();
        QCOMPARE(r.size(0), int64_t{1});
        auto src = tap.source[r[0][0]], w = tap.weights[r[0][0]];
        if (target < 0) target = src.masked_select(src.ge(0))[0].item<int64_t>();  // the oldest visible note
        mass = (w * src.eq(target).to(w.dtype())).sum();
      };
      model.forward(tokens, state, o);
      return mass;
    };
    const double before = mass_on_target(true).item<double>();
    QVERIFY(target >= 0);
    for (int step = 0; step < 60; ++step) {
      auto loss = -torch::log(mass_on_target(false) + 1e-6);
      auto grads = torch::autograd::grad({loss}, {model.weights()[q], model.weights()[k]});
      torch::NoGradGuard no_grad;
      for (size_t i = 0; i < 2; ++i) {
        const std::string& name = i == 0 ? q : k;
        model.mutable_weights().set(name, (model.weights()[name] - 0.5 * grads[i]).detach().set_requires_grad(true));
      }
    }
    const double after = mass_on_target(false).item<double>();
    qInfo("attention on note %lld from position %lld: %.3f -> %.3f", static_cast<long long>(target),
          static_cast<long long>(row), before, after);
    QVERIFY(after > 0.8 && after > before + 0.3);
  }

  void importanceTapTeachesSelection() {
    // A hinge on the tapped importance (as the selection loss builds it) lifts a token that
    // was not noted over the threshold: novelty stays differentiable through the summaries.
    ModelConfig c = testing::tiny_config();
    c.pool_slots = 64;
    c.tau_note = 0.6;
    MemMambaModel model = MemMambaModel::random(c, 3);
    std::vector<int64_t> ids;
    for (int i = 0; i < 40; ++i) ids.push_back(i % 5 == 0 ? 7 : (i * 13 + 1) % 64);  // token 7 repeats
    auto tokens = torch::tensor(ids, torch::kInt64).view({1, -1});
    const std::string w = "layers.1.note.summary.weight";
    model.mutable_weights().set(w, model.weights()[w].clone().set_requires_grad(true));
    const int64_t position = 35;  // a repeat of token 7: not novel
    auto importance_at = [&] {
      torch::Tensor value;
      RunState state = model.new_state(1);
      RunOptions o = model.default_options();
      o.on_importance = [&](int64_t layer, int64_t, const torch::Tensor& imp) {
        QCOMPARE(imp.size(1), int64_t{40});
        if (layer == 1) value = imp[0][position];
      };
      model.forward(tokens, state, o);
      return value;
    };
    const double before = importance_at().item<double>();
    double after = before;
    for (int step = 0; step < 80 && after <= c.tau_note + 0.05; ++step) {
      auto loss = torch::relu(c.tau_note + 0.1 - importance_at());
      auto grad = torch::autograd::grad({loss}, {model.weights()[w]})[0];
      torch::NoGradGuard no_grad;
      model.mutable_weights().set(w, (model.weights()[w] - 0.5 * grad).detach().set_requires_grad(true));
      after = importance_at().item<double>();
    }
    qInfo("importance of a repeated token in layer 1: %.3f -> %.3f (tau1 %.2f)", before, after, c.tau_note);
    QVERIFY(before < c.tau_note);
    QVERIFY(after > c.tau_note);
  }

  void passkeyExamplesSpanTheirLengths() {
    TrainOptions o;
    const int64_t row = 16385;
    int64_t lo = row, hi = 0;
    std::mt19937_64 rng(3);
    for (int i = 0; i < 2000; ++i) {
      const int64_t n = passkey_example_tokens(o, row, rng());
      lo = std::min(lo, n);
      hi = std::max(hi, n);
    }
    QVERIFY(lo >= 256 && lo < 256 + 200);  // the default shortest is 256 tokens
    QVERIFY(hi <= row - 24 && hi > row - 24 - 200);
    o.passkey_min_tokens = 12000;  // long examples only: the key lies far from its answer
    lo = row;
    for (int i = 0; i < 2000; ++i) lo = std::min(lo, passkey_example_tokens(o, row, rng()));
    QVERIFY(lo >= 12000 && lo < 12000 + 50);
    o.passkey_min_tokens = 1 << 20;  // longer than the row: every example fills it
    QCOMPARE(passkey_example_tokens(o, row, rng()), row - 25);
    QCOMPARE(passkey_example_tokens(o, 128, 0), int64_t{103});
    TrainOptions tiny = tinyRun(QStringLiteral("."), QStringLiteral("."), 1);
    tiny.passkey_min_tokens = 10;  // too short to hold a prompt
    QVERIFY_THROWS_EXCEPTION(std::invalid_argument, train_model(tiny, [](const TrainProgress&) { return true; }));
  }

  void blindNeedleSpansTheKeyAndItsSpread() {
    const Tokenizer tok = Tokenizer::load(std::string(MEMMAMBA_SOURCE_DIR) + "/sample_data/tokenizer.model");
    const eval::PasskeyGenerator gen(tok, {}, eval::Haystack::RepeatedFiller);
    for (uint64_t seed : {1u, 2u, 3u}) {
      const eval::PasskeyCase c = gen.make(500, 0.2 + 0.2 * static_cast<double>(seed), seed);
      const std::string key = c.key;
      const std::string text = passkey_training_text(c);
      const Encoding enc = tok.encode(text);
      const auto n = static_cast<int64_t>(enc.ids.size());
      const int64_t shift = 41, row_length = n + shift, margin = 24;
      const auto [begin, end] = blind_needle_span(c, enc, row_length, margin);
      const auto first = static_cast<int64_t>(c.prompt.find(key, static_cast<size_t>(c.needle_begin)));
      const auto second = static_cast<int64_t>(c.prompt.find(key, static_cast<size_t>(first) + key.size()));
      // Starts at the token holding the key's first digit; the token before holds none of it.
      QVERIFY(enc.begin[begin - shift] <= first && first < enc.end[begin - shift]);
      QVERIFY(enc.end[begin - shift - 1] <= first);
      // Ends `margin` tokens past the token holding the second copy's last digit.
      const int64_t last = end - margin - 1 - shift;
      const int64_t last_digit = second + static_cast<int64_t>(key.size()) - 1;
      QVERIFY(enc.begin[last] <= last_digit && last_digit < enc.end[last]);
      QVERIFY(end <= row_length);
      // A row that keeps only the answer (the needle cut off before it): nothing to hide.
      QCOMPARE(blind_needle_span(c, enc, 5, 0), (std::pair<int64_t, int64_t>{0, 0}));
    }
  }

  void blindNeedleHidesTokensFromTheSsm() {
    // With memory off, tokens inside a masked span reach later positions only through the SSM:
    // with the mask (long enough for the convolutions' spread) later logits cannot change.
    ModelConfig c = testing::tiny_config();
    c.memory = false;
    const MemMambaModel model = MemMambaModel::random(c, 5);
    const int64_t T = 64, begin = 10, changed = 4;
    const int64_t end = begin + changed + (c.conv_kernel - 1) * c.n_layers;
    QVERIFY(end + 4 < T);
    std::vector<int64_t> ids;
    for (int64_t i = 0; i < T; ++i) ids.push_back((i * 13 + 3) % c.vocab_size);
    auto a = torch::tensor(ids, torch::kInt64).view({1, T});
    auto b = a.clone();
    for (int64_t i = begin; i < begin + changed; ++i) b[0][i] = (ids[static_cast<size_t>(i)] + 7) % c.vocab_size;
    auto mask = torch::ones({1, T});
    mask.narrow(1, begin, end - begin).zero_();
    auto logits_after = [&](const torch::Tensor& tokens, const torch::Tensor& m) {
      RunState state = model.new_state(1);
      RunOptions o = model.default_options();
      o.chunk_tokens = 16;  // the mask follows the chunks
      o.ssm_input_mask = m;
      return model.logits(model.forward(tokens, state, o)).narrow(1, end, T - end);
    };
    const double masked = (logits_after(a, mask) - logits_after(b, mask)).abs().max().item<double>();
    const double unmasked = (logits_after(a, {}) - logits_after(b, {})).abs().max().item<double>();
    qInfo("largest change of a later logit: %.3g with the mask, %.3g without", masked, unmasked);
    QVERIFY(masked < 1e-6);
    QVERIFY(unmasked > 1e-5);  // unmasked, the change travels
    // A mask of another shape is refused.
    QVERIFY_THROWS_EXCEPTION(std::invalid_argument, logits_after(a, torch::ones({1, T - 1})));
  }

  // A rank's rows are the rows a whole micro-batch holds at those places (tokens, retrieval
  // targets renumbered, blind-needle mask), made on several threads alike run after run.
  void rowsOfARankEqualTheWholeBatchRows() {
    QTemporaryDir dir;
    writeShards(dir.path());
    TrainOptions o = passkeyRun(dir.path(), dir.filePath(QStringLiteral("out")), 1);
    o.passkey_fraction = 0.6;  // some rows passkey examples, some book text
    o.blind_needle_fraction = 1;
    const TokenShard train = TokenShard::load(dir.filePath(QStringLiteral("train.tokens")).toStdString());
    const BatchMaker maker(o, train, 6);
    int all_keys = 0, part_keys = 0;
    RetrievalTargets all_targets, part_targets;
    torch::Tensor all_mask, part_mask;
    const torch::Tensor all = maker.make(4, 1, 6, &all_keys, &all_targets, &all_mask);
    const torch::Tensor part = maker.make_rows(4, 1, 2, 3, &part_keys, &part_targets, &part_mask);
    QVERIFY(torch::equal(part, all.narrow(0, 2, 3)));
    QVERIFY(torch::equal(maker.make(4, 1, 6, nullptr), all));
    QVERIFY(!torch::equal(maker.make(5, 1, 6, nullptr), all));
    QVERIFY(all_keys > 0 && all_keys < 6);
    int64_t keys_in_part = 0;
    for (size_t i = 0; i < all_targets.row.size(); ++i) {
      if (all_targets.row[i] < 2 || all_targets.row[i] >= 5) continue;
      ++keys_in_part;
      QVERIFY(std::find(part_targets.query.begin(), part_targets.query.end(), all_targets.query[i]) != part_targets.query.end());
    }
    QCOMPARE(static_cast<int64_t>(part_targets.row.size()), keys_in_part);
    for (int64_t r : part_targets.row) QVERIFY(r >= 0 && r < 3);
    if (all_mask.defined() && all_mask.narrow(0, 2, 3).lt(1).any().item<bool>()) {
      QVERIFY(part_mask.defined());
      QVERIFY(torch::equal(part_mask, all_mask.narrow(0, 2, 3)));
    }
  }

  void blindNeedlesRunInTheTrainer() {
    // Blind needles hide the key from the SSM and change nothing else: the same rows (a
    // MemMamba and its Mamba twin train on the same batches), a mask over each key.
    QTemporaryDir dir;
    writeShards(dir.path());
    TrainOptions o = passkeyRun(dir.path(), dir.filePath(QStringLiteral("seen")), 1);
    TrainOptions hidden = o;
    hidden.out_dir = dir.filePath(QStringLiteral("blind")).toStdString();
    hidden.blind_needle_fraction = 1;
    const TokenShard train = TokenShard::load(dir.filePath(QStringLiteral("train.tokens")).toStdString());
    const BatchMaker plain(o, train, 6), blind(hidden, train, 6);
    for (int64_t step : {0, 3}) {
      torch::Tensor no_mask, mask;
      int keys = 0;
      const torch::Tensor a = plain.make(step, 0, 2, &keys, nullptr, &no_mask);
      const torch::Tensor b = blind.make(step, 0, 2, &keys, nullptr, &mask);
      QVERIFY(torch::equal(a, b));
      QVERIFY(!no_mask.defined());
      QVERIFY(mask.defined());
      QCOMPARE(mask.size(0), int64_t{2});
      for (int64_t r = 0; r < 2; ++r) {
        const double hidden_tokens = (1 - mask[r]).sum().item<double>();
        QVERIFY2(hidden_tokens >= 6 + 2, qPrintable(QString("row %1 hides %2 tokens").arg(r).arg(hidden_tokens)));
      }
    }
    double seen = 0, blind_loss = 0;
    train_model(o, [&](const TrainProgress& p) { seen = p.loss; return true; });
    train_model(hidden, [&](const TrainProgress& p) { blind_loss = p.loss; return true; });
    QVERIFY(std::isfinite(seen) && std::isfinite(blind_loss));
    TrainOptions bad = hidden;
    bad.blind_needle_fraction = 1.5;
    QVERIFY_THROWS_EXCEPTION(std::invalid_argument, train_model(bad, [](const TrainProgress&) { return true; }));
  }

  // The multi-tensor AdamW and clipping equal their one-tensor-at-a-time forms (AdamW's
  // formulas written out; LibTorch's clip_grad_norm_), decay and no decay, clipped or not.
  void optimizerMatchesItsPerTensorForm() {
    torch::manual_seed(3);
    const std::vector<std::string> names{"layers.0.in_proj.weight", "layers.0.norm.weight", "layers.0.A_log"};
    const std::vector<std::vector<int64_t>> shapes{{6, 5}, {5}, {4, 3}};
    AdamW opt;
    std::vector<torch::Tensor> ref, ref_m, ref_v;
    for (size_t i = 0; i < names.size(); ++i) {
      opt.add(names[i], torch::randn(shapes[i]).requires_grad_(true));
      ref.push_back(opt.params[i].detach().clone());
      ref_m.push_back(torch::zeros(shapes[i]));
      ref_v.push_back(torch::zeros(shapes[i]));
    }
    TrainOptions o;
    for (int step = 1; step <= 3; ++step) {
      std::vector<torch::Tensor> grads;
      for (size_t i = 0; i < names.size(); ++i) grads.push_back(torch::randn(shapes[i]) * (step == 2 ? 10.0 : 0.1));
      std::vector<torch::Tensor> clipped;  // LibTorch's clipping on copies
      for (size_t i = 0; i < names.size(); ++i) {
        clipped.push_back(torch::zeros(shapes[i]).requires_grad_(true));
        clipped[i].mutable_grad() = grads[i].clone();
        opt.params[i].mutable_grad() = grads[i].clone();
      }
      const double expected_norm = torch::nn::utils::clip_grad_norm_(clipped, 1.0);
      QVERIFY(std::abs(clip_gradients(opt.params, 1.0) - expected_norm) < 1e-5 * expected_norm);
      for (size_t i = 0; i < names.size(); ++i) QVERIFY(torch::allclose(opt.params[i].grad(), clipped[i].grad(), 1e-5, 1e-7));
      const double lr = 0.01 * step, c1 = 1 - std::pow(o.beta1, step), c2 = 1 - std::pow(o.beta2, step);
      for (size_t i = 0; i < names.size(); ++i) {
        const torch::Tensor g = clipped[i].grad();
        ref_m[i] = ref_m[i] * o.beta1 + g * (1 - o.beta1);
        ref_v[i] = ref_v[i] * o.beta2 + g * g * (1 - o.beta2);
        if (i == 0) ref[i] = ref[i] * (1 - lr * o.weight_decay);  // matrices decay; norms and A_log do not
        ref[i] = ref[i] - (lr / c1) * ref_m[i] / ((ref_v[i] / c2).sqrt() + o.eps);
      }
      opt.step_with(lr, o);
      for (size_t i = 0; i < names.size(); ++i) {
        const double diff = (opt.params[i].detach() - ref[i]).abs().max().item<double>();
        if (diff > 1e-6) qWarning("step %d, %s: differs by %g", step, names[i].c_str(), diff);
        QVERIFY(diff <= 1e-6);
      }
    }
    QCOMPARE(opt.step, int64_t{3});
  }

  void retrievalLossRunsInTheTrainer() {
    QTemporaryDir dir;
    writeShards(dir.path());
    TrainOptions o = passkeyRun(dir.path(), dir.filePath(QStringLiteral("run")), 3);
    o.config.pool_slots = 256;  // nothing is evicted within a row
    o.retrieval_loss_weight = 1;
    o.answer_loss_weight = 1;
    o.note_loss_weight = 1;
    std::vector<TrainProgress> steps;
    train_model(o, [&](const TrainProgress& p) { steps.push_back(p); return true; });
    QCOMPARE(steps.size(), size_t{3});
    for (const TrainProgress& p : steps) {
      qInfo("step %lld: loss %.3f retrieval %.3f key attention %.3f coverage %.2f", static_cast<long long>(p.step), p.loss,
            p.retrieval_loss, p.key_attention, p.retrieval_coverage);
      QVERIFY(std::isfinite(p.retrieval_loss) && p.retrieval_loss > 0);
      QVERIFY(p.key_attention > 0 && p.key_attention < 1);
      QVERIFY(p.retrieval_coverage > 0 && p.retrieval_coverage <= 1);
      QVERIFY(p.answer_loss > 1 && p.answer_loss < 20);  // an untrained model does not know the key
      QVERIFY(p.note_loss >= 0 && p.note_loss < 2 && p.key_noted >= 0 && p.key_noted <= 1);
    }
    std::ifstream csv(dir.filePath(QStringLiteral("run/metrics.csv")).toStdString());
    std::string header, line, last;
    std::getline(csv, header);
    while (std::getline(csv, line)) last = line;
    QVERIFY(QString::fromStdString(header).contains(QStringLiteral("retrieval_loss,key_attention,retrieval_coverage,answer_loss,note_loss,key_noted,")));
    QCOMPARE(QString::fromStdString(last).split(',').size(), QString::fromStdString(header).split(',').size());
    // Mamba-only models have nothing to read: the loss is refused quietly (NaN columns).
    TrainOptions m = o;
    m.out_dir = dir.filePath(QStringLiteral("mamba")).toStdString();
    m.config.memory = false;
    m.steps = 1;
    bool all_nan = true;
    train_model(m, [&](const TrainProgress& p) { all_nan = all_nan && std::isnan(p.retrieval_loss); return true; });
    QVERIFY(all_nan);
  }
};

QTEST_MAIN(TestTrainer)
#include "test_trainer.moc"
