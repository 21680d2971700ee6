#include <QtTest/QtTest>

#include "model/eval/passkey.h"
#include "model/eval/passkey_eval.h"
#include "model/selective_scan.h"
#include "model/text_input.h"
#include "model/tokenizer.h"
#include "model/runtime.h"

using namespace memmamba;
using namespace memmamba::eval;

namespace {
size_t count_of(const std::string& text, const std::string& what) {
  size_t n = 0;
  for (size_t at = text.find(what); at != std::string::npos; at = text.find(what, at + 1)) ++n;
  return n;
}
}  // namespace

class TestPasskey : public QObject {
  Q_OBJECT
  std::unique_ptr<Tokenizer> tok_;
  std::vector<std::string> sentences_;

 private Q_SLOTS:
  void initTestCase() {
    tok_ = std::make_unique<Tokenizer>(Tokenizer::load(std::string(MEMMAMBA_SOURCE_DIR) + "/sample_data/tokenizer.model"));
    sentences_ = split_sentences(
        load_text_file(std::string(MEMMAMBA_SOURCE_DIR) + "/sample_data/Alice-s-Adventures-in-Wonderland_11.txt"));
    QVERIFY(sentences_.size() > 500);
  }

  void splitsSentences() {
    auto s = split_sentences("One two three four five.  Short one.\nSix seven\neight nine ten! Eleven twelve thirteen fourteen fifteen?");
    QCOMPARE(s.size(), size_t(3));
    QCOMPARE(s[1], std::string("Six seven eight nine ten!"));
  }

  void isDeterministicPerSeed() {
    PasskeyGenerator gen(*tok_, sentences_, Haystack::BookSentences);
    PasskeyCase a = gen.make(2000, 0.5, 7), b = gen.make(2000, 0.5, 7), c = gen.make(2000, 0.5, 8);
    QCOMPARE(a.prompt, b.prompt);
    QCOMPARE(a.key, b.key);
    QVERIFY(a.prompt != c.prompt);
  }

  void holdsTheKeyOnceAtTheRequestedDepth_data() {
    QTest::addColumn<int>("length");
    QTest::addColumn<double>("depth");
    QTest::addColumn<int>("haystack");
    for (int length : {256, 1024, 4096, 16384})
      for (double depth : {0.0, 0.25, 0.5, 0.75, 1.0})
        for (int h : {0, 1})
          QTest::newRow(qPrintable(QString("%1 tokens, depth %2, %3").arg(length).arg(depth).arg(h ? "filler" : "book")))
              << length << depth << h;
  }
  void holdsTheKeyOnceAtTheRequestedDepth() {
    QFETCH(int, length);
    QFETCH(double, depth);
    QFETCH(int, haystack);
    PasskeyGenerator gen(*tok_, sentences_, haystack ? Haystack::RepeatedFiller : Haystack::BookSentences);
    for (uint64_t seed = 0; seed < 3; ++seed) {
      PasskeyCase c = gen.make(length, depth, seed);
      const std::string key = std::to_string(c.key);
      QCOMPARE(count_of(c.prompt, PasskeyGenerator::needle(c.key).substr(0, 20)), size_t(1));
      QCOMPARE(count_of(c.prompt, key), size_t(2));  // both mentions are inside the needle
      QCOMPARE(c.prompt.substr(c.needle_begin, c.needle_end - c.needle_begin) + " ", PasskeyGenerator::needle(c.key));
      QVERIFY(c.prompt.rfind(PasskeyGenerator::instruction(), 0) == 0);
      QVERIFY(c.prompt.size() > 9 && c.prompt.compare(c.prompt.size() - 8, 8, "Answer: ") == 0);
      const int64_t tokens = static_cast<int64_t>(tok_->encode(c.prompt).ids.size());
      QVERIFY2(std::abs(tokens - length) <= 8,
               qPrintable(QString("%1 tokens for a target of %2").arg(tokens).arg(length)));
      // The needle sits at the sentence boundary nearest the depth: within one sentence.
      const int64_t needle_token_pos = static_cast<int64_t>(tok_->encode(c.prompt.substr(0, c.needle_begin)).ids.size());
      const double place = static_cast<double>(needle_token_pos) / tokens;
      QVERIFY2(std::fabs(place - depth) < 0.02 + 120.0 / length,
               qPrintable(QString("needle at %1 of the prompt for depth %2").arg(place).arg(depth)));
      QVERIFY(std::fabs(c.actual_depth - depth) <= 0.5 * 120.0 / std::max(1, length - 120) + 1e-9 || length <= 256);
    }
  }

  void scoresAnswers() {
    QVERIFY(passkey_found("71432", 71432));
    QVERIFY(passkey_found(" The pass key is 71432.", 71432));
    QVERIFY(passkey_found("\n71432 is it", 71432));
    QVERIFY(passkey_found("(7)", 7));
    QVERIFY(!passkey_found("714320", 71432));
    QVERIFY(!passkey_found("71432a", 71432));
    QVERIFY(!passkey_found("7 1 4 3 2", 71432));
    QVERIFY(!passkey_found("", 71432));
    QVERIFY(!passkey_found("07", 7));
    QCOMPARE(passkey_digits_right("13672 is the pass key", 14872), int64_t{3});
    QCOMPARE(passkey_digits_right("14872.", 14872), int64_t{5});
    QCOMPARE(passkey_digits_right("the key: 148", 14872), int64_t{3});
    QCOMPARE(passkey_digits_right("99999 no 14000", 14872), int64_t{2});
    QCOMPARE(passkey_digits_right("", 14872), int64_t{0});
  }

  void gridRecordsEveryCase() {
    configure_cpu_runtime();
    ModelConfig c;
    c.d_model = 16;
    c.n_layers = 2;
    c.summary_dim = 8;
    c.pool_slots = 4;
    c.tau_retrieve = -1.0;  // always retrieve, so the answer's attention is recorded
    MemMambaModel m = MemMambaModel::random(c, 1);
    PasskeyGenerator gen(*tok_, sentences_, Haystack::BookSentences);
    PasskeyGridOptions o;
    o.lengths = {128, 256};
    o.depths = {0.0, 1.0};
    o.samples = 2;
    o.max_new_tokens = 3;
    o.run = m.default_options();
    int64_t calls = 0;
    Json r = run_passkey_grid(m, *tok_, gen, o, [&](int64_t done, int64_t total) {
      ++calls;
      return done <= total;
    });
    QCOMPARE(calls, int64_t(8));
    QCOMPARE(r.at("cells").as_array().size(), size_t(4));
    QCOMPARE(r.at("cases").as_array().size(), size_t(8));
    for (const Json& cs : r.at("cases").as_array()) {
      // The recorded key positions are the key's digits in the prompt.
      PasskeyCase again = gen.make(cs.at("length").as_int(), cs.at("depth").as_double(), cs.at("sample").as_int());
      QCOMPARE(again.key, cs.at("key").as_int());
      Encoding e = tok_->encode(again.prompt);
      std::string digits;
      for (const Json& p : cs.at("key_token_positions").as_array())
        digits += again.prompt.substr(e.begin[p.as_int()], e.end[p.as_int()] - e.begin[p.as_int()]);
      QCOMPARE(digits, std::to_string(again.key) + std::to_string(again.key));
      QCOMPARE(cs.at("layers").as_array().size(), size_t(2));
      QVERIFY(cs.at("layers").as_array()[0].at("answer_attention").as_array().size() > 0);
      // One read per answer position (the last prompt token and each generated token but the
      // last); the first agrees with the recorded answer attention.
      QCOMPARE(cs.at("answer_pieces").as_array().size(), size_t(3));
      const int64_t prompt_tokens = cs.at("prompt_tokens").as_int();
      const std::vector<Json>& key_positions = cs.at("key_token_positions").as_array();
      QCOMPARE(key_positions.size(), 2 * std::to_string(again.key).size());  // the tokenizer splits digits
      for (const Json& layer : cs.at("layers").as_array()) {
        const std::vector<Json>& reads = layer.at("answer_reads").as_array();
        QCOMPARE(reads.size(), size_t(3));
        for (size_t i = 0; i < reads.size(); ++i) {
          QCOMPARE(reads[i].at("position").as_int(), prompt_tokens - 1 + static_cast<int64_t>(i));
          QVERIFY(reads[i].at("top_key_weight").as_double() <= reads[i].at("weight_on_key_notes").as_double() + 1e-9);
          const int64_t source = reads[i].at("top_key_source").as_int();
          if (source < 0) {
            QCOMPARE(reads[i].at("key_digit").as_int(), int64_t{-1});
            continue;
          }
          const auto at = std::find_if(key_positions.begin(), key_positions.end(),
                                       [&](const Json& p) { return p.as_int() == source; });
          QVERIFY(at != key_positions.end());
          QCOMPARE(reads[i].at("key_digit").as_int(),
                   static_cast<int64_t>(at - key_positions.begin()) % static_cast<int64_t>(std::to_string(again.key).size()));
        }
        double top = 0;
        for (const Json& a : layer.at("answer_attention").as_array())
          if (a.at("holds_key").as_bool()) top = std::max(top, a.at("weight").as_double());
        QCOMPARE(reads[0].at("top_key_weight").as_double(), top);
        QVERIFY(std::abs(reads[0].at("weight_on_key_notes").as_double() -
                         layer.at("answer_weight_on_key_notes").as_double()) < 1e-9);
      }
      QCOMPARE(cs.at("hit").as_bool(), passkey_found(cs.at("answer").as_string(), again.key));
    }
    const std::string csv = passkey_results_csv(r);
    QCOMPARE(std::count(csv.begin(), csv.end(), '\n'), 9L);
    // Cancelling stops the grid.
    QVERIFY_THROWS_EXCEPTION(Cancelled, run_passkey_grid(m, *tok_, gen, o, [](int64_t, int64_t) { return false; }));
  }

  void refusesBadRequests() {
    PasskeyGenerator gen(*tok_, sentences_, Haystack::BookSentences);
    QVERIFY_THROWS_EXCEPTION(std::invalid_argument, gen.make(10, 0.5, 1));
    QVERIFY_THROWS_EXCEPTION(std::invalid_argument, gen.make(1000, 1.5, 1));
    QVERIFY_THROWS_EXCEPTION(std::invalid_argument, PasskeyGenerator(*tok_, {}, Haystack::BookSentences));
  }
};

QTEST_APPLESS_MAIN(TestPasskey)
#include "test_passkey.moc"
