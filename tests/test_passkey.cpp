#include <cctype>
#include <QtTest/QtTest>

#include <set>

#include "model/eval/passkey.h"
#include "model/eval/passkey_grid.h"
#include "model/file_io.h"
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
    double longest = 0;
    for (const std::string& sentence : haystack ? split_sentences("The grass is green.", 1) : sentences_)
      longest = std::max(longest, static_cast<double>(tok_->encode(sentence + " ").ids.size()));
    for (uint64_t seed = 0; seed < 3; ++seed) {
      PasskeyCase c = gen.make(length, depth, seed);
      const std::string key = c.key;
      QCOMPARE(key.size(), size_t(5));
      QVERIFY(key[0] != '0');
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
      // The nearest sentence boundary is at most half the longest sentence away.
      QVERIFY2(std::fabs(c.actual_depth - depth) <= 0.5 * longest / std::max(1, length - 120) + 1e-9 || length <= 256,
               qPrintable(QString("actual depth %1 for %2, seed %3").arg(c.actual_depth).arg(depth).arg(seed)));
    }
  }

  // A grid's cases counted by key length and wording, and its misses by the answer's shape;
  // records that lack what is counted are skipped; the shipped held-out grid shows its cut keys.
  void breaksGridsDownByKeyAndWording() {
    QVERIFY(answer_shape("15146. Isn", "15146757") == AnswerShape::CutShort);
    QVERIFY(answer_shape("151467577", "15146757") == AnswerShape::RanOn);
    QVERIFY(answer_shape("“42212.” he", "42212") == AnswerShape::Key);
    QVERIFY(answer_shape("1 is", "15146757") == AnswerShape::Other);  // one character is no cut key
    QVERIFY(answer_shape("The pass key is", "4557") == AnswerShape::Other);
    QVERIFY(answer_shape("", "4557") == AnswerShape::Other);
    Json r = Json::object();
    Json cases = Json::array();
    auto add = [&](Json key, const char* answer, bool hit, int64_t wording) {
      Json c = Json::object();
      c["key"] = std::move(key);
      c["answer"] = std::string(answer);
      c["hit"] = hit;
      c["wording"] = wording;
      cases.push_back(c);
    };
    add(std::string("12345"), "12345.", true, 5);
    add(int64_t{54321}, "54321", true, 6);  // keys as numbers in older files
    add(std::string("12345678"), "12345. He", false, 5);
    add(std::string("87654321"), "876543210", false, 6);
    add(std::string("87654321"), "It was", false, 6);
    Json broken = Json::object();
    broken["key"] = std::string("999");
    broken["hit"] = std::string("yes");
    cases.push_back(broken);
    r["cases"] = cases;
    const GridBreakdown b = grid_breakdown(r);
    QCOMPARE(b.by_key_length.size(), size_t(2));
    QCOMPARE(b.by_key_length[0].value, int64_t{5});
    QCOMPARE(b.by_key_length[0].hits, int64_t{2});
    QCOMPARE(b.by_key_length[1].cases, int64_t{3});
    QCOMPARE(b.by_key_length[1].hits, int64_t{0});
    QCOMPARE(b.by_wording.size(), size_t(2));
    QCOMPARE(b.by_wording[1].cases, int64_t{3});
    QCOMPARE(b.misses, int64_t{3});
    QCOMPARE(b.cut_short, int64_t{1});
    QCOMPARE(b.ran_on, int64_t{1});
    QCOMPARE(b.describe(), std::string("Hits by key length (characters): 5: 2/2, 8: 0/3. By wording: 5: 1/2, 6: 1/3. "
                                       "Of 3 misses, 1 cut the key short and 1 ran on past its end."));
    QVERIFY(grid_breakdown(Json::object()).describe().empty());
    const Json shipped = Json::parse(read_file(std::string(MEMMAMBA_SOURCE_DIR) + "/docs/grids/heldout-wordings-memmamba-small.json"));
    const GridBreakdown held = grid_breakdown(shipped);
    int64_t cases_counted = 0;
    for (const auto& g : held.by_key_length) cases_counted += g.cases;
    QCOMPARE(cases_counted, static_cast<int64_t>(shipped.at("cases").as_array().size()));
    int64_t missed = 0;
    for (const Json& c : shipped.at("cases").as_array()) missed += c.at("hit").as_bool() ? 0 : 1;
    QCOMPARE(held.misses, missed);
    // Its misses' shapes, recounted from the answers' first words: a proper prefix of the key
    // (cut short) or the key and more (run on).
    int64_t shorter = 0, longer = 0;
    for (const Json& c : shipped.at("cases").as_array()) {
      if (c.at("hit").as_bool()) continue;
      const std::string key = c.at("key").as_string();
      std::string word = c.at("answer").as_string();
      word = word.substr(0, word.find_first_of(" \n", word.find_first_not_of(' ')));
      while (!word.empty() && !std::isalnum(static_cast<unsigned char>(word.back()))) word.pop_back();
      while (!word.empty() && !std::isalnum(static_cast<unsigned char>(word.front()))) word.erase(0, 1);
      shorter += word.size() >= 2 && word.size() < key.size() && key.compare(0, word.size(), word) == 0 ? 1 : 0;
      longer += word.size() > key.size() && word.compare(0, key.size(), key) == 0 ? 1 : 0;
    }
    QCOMPARE(held.cut_short, shorter);
    QCOMPARE(held.ran_on, longer);
  }

  // Facts grids: hits split by where the asked fact stands in the text, and the misses that
  // answer another fact's value; passkey records and malformed needles are left out of both.
  void breaksFactsDownByTheAskedFactsPlace() {
    Json cases = Json::array();
    auto add = [&](std::vector<double> depths, int64_t asked, bool hit, const char* other) {
      Json c = Json::object();
      c["key"] = std::string("12345");
      c["answer"] = std::string(hit ? "12345." : "99999.");
      c["hit"] = hit;
      Json needles = Json::array();
      for (double d : depths) {
        Json n = Json::object();
        n["actual_depth"] = d;
        needles.push_back(n);
      }
      c["needles"] = needles;
      c["asked"] = asked;
      c["answered_other_fact"] = std::string(other);
      cases.push_back(c);
    };
    add({0.1, 0.8}, 0, true, "");             // asked first, found
    add({0.7, 0.2, 0.5}, 1, true, "");        // asked first though not the first needle listed
    add({0.1, 0.8}, 1, false, "blue box");    // asked later, the first fact's value answered
    add({0.9, 0.3}, 0, false, "");            // asked later, no value answered
    add({0.2, 0.6, 0.4}, 2, true, "");        // asked second of three
    add({0.2, 0.6}, 5, false, "red door");    // asked out of range: not counted
    Json plain = Json::object();              // a passkey record
    plain["key"] = std::string("4557");
    plain["answer"] = std::string("4557");
    plain["hit"] = true;
    cases.push_back(plain);
    Json r = Json::object();
    r["cases"] = cases;
    const GridBreakdown b = grid_breakdown(r);
    QCOMPARE(b.asked_first.cases, int64_t{2});
    QCOMPARE(b.asked_first.hits, int64_t{2});
    QCOMPARE(b.asked_later.cases, int64_t{3});
    QCOMPARE(b.asked_later.hits, int64_t{1});
    QCOMPARE(b.other_fact_answers, int64_t{1});
    QCOMPARE(b.misses, int64_t{3});
    QVERIFY2(b.describe().find("Hits with the asked fact first in the text: 2/2, later in it: 1/3. Misses that answer "
                               "another fact's value: 1.") != std::string::npos,
             b.describe().c_str());
  }

  void scoresAnswers() {
    QVERIFY(passkey_found("71432", "71432"));
    QVERIFY(passkey_found(" The pass key is 71432.", "71432"));
    QVERIFY(passkey_found("\n71432 is it", "71432"));
    QVERIFY(passkey_found("(7)", "7"));
    QVERIFY(!passkey_found("714320", "71432"));
    QVERIFY(!passkey_found("71432a", "71432"));
    QVERIFY(!passkey_found("7 1 4 3 2", "71432"));
    QVERIFY(!passkey_found("", "71432"));
    QVERIFY(!passkey_found("07", "7"));
    QCOMPARE(passkey_digits_right("13672 is the pass key", "14872"), int64_t{3});
    QCOMPARE(passkey_digits_right("14872.", "14872"), int64_t{5});
    QCOMPARE(passkey_digits_right("the key: 148", "14872"), int64_t{3});
    QCOMPARE(passkey_digits_right("99999 no 14000", "14872"), int64_t{2});
    QCOMPARE(passkey_digits_right("", "14872"), int64_t{0});
  }

  // Grids written before case specs existed are reproduced case by case by the app: the
  // legacy spec must draw what the first generator drew (keys and lengths written by it, with
  // `memmamba eval passkey --lengths 128,700 --depths 0,0.5,1 --samples 2 --seed 3` on Alice).
  void legacySpecReproducesTheFirstGrids() {
    PasskeyGenerator gen(*tok_, sentences_, Haystack::BookSentences);
    struct Old { int64_t length; double depth; uint64_t sample; const char* key; double actual_depth; };
    const Old old[] = {{128, 0.0, 0, "56656", 0.0},       {128, 0.5, 1, "10202", 0.578125}, {128, 1.0, 0, "5947", 1.0},
                       {700, 0.5, 0, "52988", 0.5062893081761006}, {700, 0.5, 1, "97319", 0.4031496062992126},
                       {700, 1.0, 1, "85484", 1.0}};
    for (const Old& o : old) {
      const PasskeyCase c = gen.make(o.length, o.depth, 3 * 1000003 + o.sample, CaseSpec::legacy());
      QCOMPARE(c.key, std::string(o.key));
      QVERIFY(std::abs(c.actual_depth - o.actual_depth) < 1e-12);
      QCOMPARE(c.wording, int64_t{0});
    }
    // A result file without case settings is a legacy grid.
    Json results = Json::object();
    results["settings"] = Json::object();
    QCOMPARE(CaseSpec::of_results(results).key_digits_min, int64_t{0});
  }

  void caseSpecsRoundTripAndRejectBadValues() {
    CaseSpec s;
    s.key_kind = KeyKind::Name;
    s.key_digits_min = 3;
    s.key_digits_max = 10;
    s.facts = 4;
    s.wordings = parse_wordings("held-out", true);
    s.distractors = 2;
    s.look_alikes = 0.5;
    const CaseSpec back = CaseSpec::from_json(Json::parse(s.to_json().dump()));
    QCOMPARE(back.to_json().dump(), s.to_json().dump());
    QCOMPARE(back.describe(), std::string("4 facts, name keys, held-out wordings, 2 distractors, 50% look-alike numbers"));
    for (int64_t i : parse_wordings("held-out", false)) QVERIFY(passkey_wordings()[static_cast<size_t>(i)].held_out);
    for (int64_t i : parse_wordings("trained", true)) QVERIFY(!fact_wordings()[static_cast<size_t>(i)].held_out);
    QCOMPARE(parse_wordings("trained", false).size() + parse_wordings("held-out", false).size(), passkey_wordings().size());
    QCOMPARE(parse_key_digits("3-10"), std::make_pair(int64_t{3}, int64_t{10}));
    QCOMPARE(parse_key_digits("7"), std::make_pair(int64_t{7}, int64_t{7}));
    for (const char* bad : {"0", "10-3", "19", "a", "", "3-", "-3", "100"})
      QVERIFY_THROWS_EXCEPTION(std::invalid_argument, parse_key_digits(bad));
    for (const char* bad : {"", "99", "0,x", "held", "-1"}) QVERIFY_THROWS_EXCEPTION(std::invalid_argument, parse_wordings(bad, false));
    QVERIFY_THROWS_EXCEPTION(std::invalid_argument, parse_key_kind("number"));
    auto broken = [&](const char* field, Json value) {
      Json j = s.to_json();
      j[field] = std::move(value);
      return j;
    };
    for (const Json& j : {broken("key_kind", std::string("x")), broken("facts", int64_t{0}), broken("facts", std::string("4")),
                          broken("distractors", int64_t{-1}), broken("wordings", Json::array()),
                          broken("look_alikes", 1.5), broken("look_alikes", std::string("half")),
                          broken("key_digits", Json::array())}) {
      QVERIFY_THROWS_EXCEPTION(std::invalid_argument, CaseSpec::from_json(j));
    }
    Json out_of_range = broken("wordings", Json::array());
    Json w = Json::array();
    w.push_back(int64_t{static_cast<int64_t>(fact_wordings().size())});
    out_of_range["wordings"] = w;
    QVERIFY_THROWS_EXCEPTION(std::invalid_argument, CaseSpec::from_json(out_of_range));
  }

  // Every kind of case: the asked value occurs exactly in its needle (each mention), every
  // fact's value only in its own needle, the question names the asked fact's label, keys have
  // the asked length, the wording is one of those asked for, distractors are other numbers.
  // Composed wordings (training rows): many different instructions, needles and questions,
  // none with a held-out wording's noun or form; the key in its needle only. With labelled
  // facts: each needle names its label before its value, and the question (also a follow-up's)
  // asks by the label, none in the held-out fact wording's form; some questions name only the
  // label, some are random question words around it.
  void composedWordingsVaryAndKeepHeldOutPartsOut() {
    PasskeyGenerator gen(*tok_, sentences_, Haystack::BookSentences);
    CaseSpec spec;
    spec.key_digits_min = 3;
    spec.key_digits_max = 10;
    spec.wordings = parse_wordings("trained", false);
    spec.composed = true;
    std::set<std::string> forms;
    std::vector<std::string> held_out_parts;
    for (int64_t i : parse_wordings("held-out", false)) {
      const Wording& w = passkey_wordings()[static_cast<size_t>(i)];
      held_out_parts.push_back(w.instruction);
      held_out_parts.push_back(w.question);
      const std::string needle = w.needle;
      held_out_parts.push_back(needle.substr(0, needle.find("{key}")));  // "Take note: the access code is "
    }
    for (const char* part : {"access", "magic", "forget"}) held_out_parts.emplace_back(part);
    for (uint64_t seed = 0; seed < 200; ++seed) {
      const PasskeyCase c = gen.make(600, 0.5, seed, spec);
      QCOMPARE(c.wording, int64_t{-1});
      QVERIFY(c.prompt.size() > 8 && c.prompt.substr(c.prompt.size() - 8) == "Answer: ");
      const std::string instruction = c.prompt.substr(0, c.prompt.find('\n') + 1);
      const std::string question = c.prompt.substr(c.prompt.rfind('\n', c.prompt.size() - 10));
      const std::string needle = c.prompt.substr(c.needle_begin, c.needle_end - c.needle_begin);
      for (const std::string& part : held_out_parts)
        for (const std::string* text : {&instruction, &question, &needle}) QVERIFY2(text->find(part) == std::string::npos, qPrintable(QString::fromStdString(*text)));
      const size_t mentions = key_mentions(c).size();
      QVERIFY(mentions == 1 || mentions == 2);
      QCOMPARE(count_of(c.prompt, c.key), mentions);
      std::string form = needle;
      for (size_t at; (at = form.find(c.key)) != std::string::npos;) form.replace(at, c.key.size(), "{key}");
      forms.insert(instruction + "|" + form + "|" + question);
    }
    QVERIFY2(forms.size() > 150, qPrintable(QString("%1 distinct wordings in 200 cases").arg(forms.size())));
    spec.facts = 3;
    spec.wordings = parse_wordings("trained", true);
    std::vector<std::string> held_out_fact_parts;
    for (int64_t i : parse_wordings("held-out", true)) {
      const Wording& w = fact_wordings()[static_cast<size_t>(i)];
      held_out_fact_parts.push_back(w.instruction);
      const std::string question = w.question;
      held_out_fact_parts.push_back(question.substr(0, question.find("{label}")));  // "\nHow is the "
    }
    held_out_fact_parts.emplace_back("marked");
    std::set<std::string> fact_forms, question_openings;
    int64_t questions_without_noun_or_verb = 0;
    for (uint64_t seed = 0; seed < 100; ++seed) {
      const PasskeyCase c = gen.make(800, 0.5, seed, spec);
      QCOMPARE(c.wording, int64_t{-1});
      QCOMPARE(c.needles.size(), size_t{3});
      const std::string question = c.prompt.substr(c.prompt.rfind('\n', c.prompt.size() - 10));
      QCOMPARE(fact_question(c, static_cast<size_t>(c.asked)), question);
      // The wording's own text (the haystack is a book's and may hold any word).
      std::vector<std::string> wording_texts = {c.prompt.substr(0, c.prompt.find('\n') + 1), question};
      for (const NeedleInfo& needle : c.needles) wording_texts.push_back(c.prompt.substr(needle.begin, needle.end - needle.begin));
      for (const std::string& part : held_out_fact_parts)
        for (const std::string& text : wording_texts)
          QVERIFY2(text.find(part) == std::string::npos, qPrintable(QString::fromStdString(text)));
      for (size_t n = 0; n < c.needles.size(); ++n) {
        const NeedleInfo& needle = c.needles[n];
        const std::string text = c.prompt.substr(needle.begin, needle.end - needle.begin);
        const size_t label = text.find(needle.label), value = text.find(needle.value);
        QVERIFY2(label != std::string::npos && value != std::string::npos && label < value, qPrintable(QString::fromStdString(text)));
        QVERIFY2(fact_question(c, n).find("the " + needle.label) != std::string::npos, qPrintable(QString::fromStdString(fact_question(c, n) + "/" + needle.label)));
      }
      fact_forms.insert(c.prompt.substr(0, c.prompt.find('\n')) + "|" + question.substr(0, question.find(" the ")));
      for (const char* bare : {"\nWhat about the ", "\nAnd the ", "\nWhat was said of the "})
        if (question.rfind(bare, 0) == 0) ++questions_without_noun_or_verb;
      question_openings.insert(question.substr(0, question.find(" the ")));
    }
    // The word just before a value: the listed nouns and verbs end in a few dozen words; the
    // haystack's words (in a sixth of the wordings) add many more: 42 without them, 98 with them here.
    std::set<std::string> words_before_values;
    for (uint64_t seed = 0; seed < 400; ++seed) {
      const PasskeyCase c = gen.make(300, 0.5, seed, spec);
      for (const NeedleInfo& needle : c.needles) {
        const std::string before = c.prompt.substr(needle.begin, c.prompt.find(needle.value, needle.begin) - needle.begin);
        const size_t space = before.find_last_of(' ', before.size() - 2);
        words_before_values.insert(before.substr(space + 1));
      }
    }
    QVERIFY2(words_before_values.size() > 70, qPrintable(QString::number(words_before_values.size())));
    // The listed forms open in 21 ways in these 100 cases; the scrambled questions (a quarter) add most of theirs.
    QVERIFY2(question_openings.size() > 30, qPrintable(QString::number(question_openings.size())));
    // A quarter of the questions name the label alone (the answer is the label's value, whatever the form).
    QVERIFY2(questions_without_noun_or_verb > 10 && questions_without_noun_or_verb < 45, qPrintable(QString::number(questions_without_noun_or_verb)));
    QVERIFY2(fact_forms.size() > 30, qPrintable(QString("%1 distinct fact wordings in 100 cases").arg(fact_forms.size())));
  }

  // A haystack word put before a fact's value is never one that carries a held-out wording's
  // word ("marked", "magic", "forget", "access"), even in a book made of little else.
  void haystackWordsBeforeValuesKeepHeldOutWordsOut() {
    const std::vector<std::string> sentences = {"The magic stone was remarked by forgetful and accessible people here.",
                                                "Magic words, marked maps and access roads are not forgotten by anyone."};
    PasskeyGenerator gen(*tok_, sentences, Haystack::BookSentences);
    CaseSpec spec;
    spec.key_digits_min = 3;
    spec.key_digits_max = 6;
    spec.facts = 2;
    spec.wordings = parse_wordings("trained", true);
    spec.composed = true;
    int64_t needles = 0;
    for (uint64_t seed = 0; seed < 120; ++seed) {
      const PasskeyCase c = gen.make(300, 0.5, seed, spec);
      for (const NeedleInfo& needle : c.needles) {
        const std::string text = c.prompt.substr(needle.begin, needle.end - needle.begin);
        for (const char* part : {"marked", "magic", "forget", "access"}) QVERIFY2(text.find(part) == std::string::npos, qPrintable(QString::fromStdString(text)));
        ++needles;
      }
    }
    QCOMPARE(needles, int64_t{240});
  }

  void casesOfEveryKindHoldTheirFacts() {
    PasskeyGenerator gen(*tok_, sentences_, Haystack::BookSentences);
    for (const KeyKind kind : {KeyKind::Digits, KeyKind::Word, KeyKind::Name})
      for (const int64_t facts : {int64_t{1}, int64_t{2}, int64_t{6}})
        for (uint64_t seed = 0; seed < 6; ++seed) {
          CaseSpec spec;
          spec.key_kind = kind;
          spec.key_digits_min = 3;
          spec.key_digits_max = 10;
          spec.facts = facts;
          spec.wordings = parse_wordings(seed % 2 ? "held-out" : "trained", facts > 1);
          spec.distractors = kind == KeyKind::Digits ? 3 : 0;
          const double depth = 0.2 * static_cast<double>(seed % 5);
          const PasskeyCase c = gen.make(1500, depth, seed, spec);
          const auto& wordings = facts > 1 ? fact_wordings() : passkey_wordings();
          QVERIFY(std::find(spec.wordings.begin(), spec.wordings.end(), c.wording) != spec.wordings.end());
          const Wording& w = wordings[static_cast<size_t>(c.wording)];
          QVERIFY(c.prompt.rfind(w.instruction, 0) == 0);
          QCOMPARE(c.needles.size(), static_cast<size_t>(facts));
          QCOMPARE(c.needles[static_cast<size_t>(c.asked)].value, c.key);
          if (kind == KeyKind::Digits) {
            QVERIFY(c.key.size() >= 3 && c.key.size() <= 10 && c.key[0] != '0');
            QVERIFY(std::all_of(c.key.begin(), c.key.end(), [](char ch) { return ch >= '0' && ch <= '9'; }));
          } else {
            QVERIFY(std::all_of(c.key.begin(), c.key.end(), [](char ch) { return std::isalpha(static_cast<unsigned char>(ch)); }));
          }
          const std::string question = c.prompt.substr(c.prompt.rfind('\n', c.prompt.size() - 10));
          if (facts > 1) QVERIFY(question.find(c.needles[static_cast<size_t>(c.asked)].label) != std::string::npos);
          int64_t last_end = -1;
          for (const NeedleInfo& n : c.needles) {
            QVERIFY(n.begin > last_end);  // in prompt order, not overlapping
            last_end = n.end;
            const std::string needle = c.prompt.substr(n.begin, n.end - n.begin);
            std::string expected = w.needle;
            for (size_t at; (at = expected.find("{key}")) != std::string::npos;) expected.replace(at, 5, n.value);
            for (size_t at; (at = expected.find("{label}")) != std::string::npos;) expected.replace(at, 7, n.label);
            QCOMPARE(needle + " ", expected);
            // The value appears only in its needle (as often as the wording mentions it).
            QCOMPARE(count_of(c.prompt, n.value), count_of(w.needle, "{key}"));
          }
          const NeedleInfo& asked = c.needles[static_cast<size_t>(c.asked)];
          QCOMPARE(c.needle_begin, asked.begin);
          QCOMPARE(c.actual_depth, asked.actual_depth);
          QVERIFY2(std::fabs(asked.actual_depth - depth) < 0.2, qPrintable(QString("asked at %1 for %2").arg(asked.actual_depth).arg(depth)));
          const int64_t tokens = static_cast<int64_t>(tok_->encode(c.prompt).ids.size());
          QVERIFY2(std::abs(tokens - 1500) <= 12, qPrintable(QString("%1 tokens").arg(tokens)));
          if (spec.distractors > 0) {
            QCOMPARE(count_of(c.prompt, "was painted on a post") + count_of(c.prompt, "on the back of an old letter") +
                         count_of(c.prompt, "at the bottom of the page"),
                     size_t(3));
          }
          // Deterministic, and a forced key takes the asked needle's place.
          QCOMPARE(gen.make(1500, depth, seed, spec).prompt, c.prompt);
          const std::string forced = kind == KeyKind::Digits ? "987654" : "Zorblat";
          const PasskeyCase f = gen.make(1500, depth, seed, spec, forced);
          QCOMPARE(f.key, forced);
          QCOMPARE(count_of(f.prompt, forced), count_of(w.needle, "{key}"));
        }
  }

  // Look-alike numbers: every other value and distractor (where long enough) holds a run of the
  // key's last 2-3 digits with a digit after it; the key is still only in its needle, no value
  // holds another; the rest of the case (key, labels, asked fact, wording) is the one drawn
  // without them.
  void lookAlikeNumbersHoldTheKeysLastDigits() {
    PasskeyGenerator gen(*tok_, sentences_, Haystack::BookSentences);
    int64_t eligible = 0, alike = 0;
    for (uint64_t seed = 0; seed < 24; ++seed) {
      CaseSpec spec;
      spec.key_digits_min = 3;
      spec.key_digits_max = 10;
      spec.facts = 4;
      spec.wordings = parse_wordings("trained", true);
      spec.distractors = 2;
      const PasskeyCase plain = gen.make(1200, 0.5, seed, spec);
      spec.look_alikes = 1;
      const PasskeyCase c = gen.make(1200, 0.5, seed, spec);
      QCOMPARE(c.key, plain.key);
      QCOMPARE(c.asked, plain.asked);
      QCOMPARE(c.wording, plain.wording);
      const auto mentions = count_of(fact_wordings()[static_cast<size_t>(c.wording)].needle, "{key}");
      QCOMPARE(count_of(c.prompt, c.key), mentions);
      std::vector<std::string> others;
      for (size_t f = 0; f < c.needles.size(); ++f) {
        QCOMPARE(c.needles[f].label, plain.needles[f].label);
        if (static_cast<int64_t>(f) != c.asked) others.push_back(c.needles[f].value);
      }
      for (const char* form : {"was painted on a post", "on the back of an old letter", "at the bottom of the page"})
        for (size_t at = c.prompt.find(form); at != std::string::npos; at = c.prompt.find(form, at + 1)) {
          const size_t last = c.prompt.find_last_of("0123456789", at);  // the number comes before the form
          const size_t first = c.prompt.find_last_not_of("0123456789", last) + 1;
          others.push_back(c.prompt.substr(first, last + 1 - first));
        }
      QCOMPARE(others.size(), size_t(5));
      for (const std::string& v : others) {
        QVERIFY(v.find(c.key) == std::string::npos && c.key.find(v) == std::string::npos);
        for (const std::string& o : others) QVERIFY(&o == &v || o.find(v) == std::string::npos);
        if (c.key.size() < 4 || v.size() < 4) continue;
        ++eligible;
        for (const size_t run : {size_t{2}, size_t{3}}) {
          const size_t at = v.find(c.key.substr(c.key.size() - run));
          if (at != std::string::npos && at + run < v.size()) { ++alike; break; }
        }
      }
    }
    QVERIFY(eligible > 60);
    QVERIFY2(alike * 10 >= eligible * 9, qPrintable(QString("%1 of %2 look alike").arg(alike).arg(eligible)));
  }

  // Reference marks (training only) are numbers that count up, in the haystack's sentences and
  // never in a needle; the case is otherwise the one drawn without them.
  void referenceMarksAreNumbersOutsideTheNeedles() {
    PasskeyGenerator gen(*tok_, sentences_, Haystack::BookSentences);
    CaseSpec spec;
    spec.key_digits_min = 3;
    spec.key_digits_max = 10;
    spec.facts = 3;
    spec.wordings = parse_wordings("trained", true);
    CaseSpec marked = spec;
    marked.reference_marks = 10;
    size_t marks = 0;
    for (uint64_t seed = 0; seed < 5; ++seed) {
      const PasskeyCase plain = gen.make(3000, 0.4, seed, spec), c = gen.make(3000, 0.4, seed, marked);
      QVERIFY(plain.marks.empty());
      QCOMPARE(c.key, plain.key);
      QCOMPARE(c.wording, plain.wording);
      QCOMPARE(c.needles.size(), plain.needles.size());
      for (size_t j = 0; j < c.needles.size(); ++j) {
        QCOMPARE(c.needles[j].value, plain.needles[j].value);
        QCOMPARE(c.needles[j].label, plain.needles[j].label);
        QCOMPARE(count_of(c.prompt, c.needles[j].value), count_of(plain.prompt, plain.needles[j].value));
      }
      QCOMPARE(gen.make(3000, 0.4, seed, marked).prompt, c.prompt);
      int64_t last_number = 0, last_end = 0;
      for (const auto& [begin, end] : c.marks) {
        QVERIFY(begin >= last_end && end > begin);
        last_end = end;
        const std::string number = c.prompt.substr(static_cast<size_t>(begin), static_cast<size_t>(end - begin));
        QVERIFY2(std::all_of(number.begin(), number.end(), [](char ch) { return ch >= '0' && ch <= '9'; }),
                 qPrintable(QString::fromStdString("mark \"" + number + "\"")));
        QVERIFY(std::stoll(number) > last_number);  // they count up, as footnotes do
        last_number = std::stoll(number);
        for (const NeedleInfo& n : c.needles) QVERIFY(end <= n.begin || begin >= n.end);
      }
      if (!c.marks.empty() && seed == 0) {
        const auto from = static_cast<size_t>(std::max<int64_t>(0, c.marks.front().first - 60));
        qInfo("a mark: ...%s...", c.prompt.substr(from, 90).c_str());
      }
      marks += c.marks.size();
      // The marks' tokens are budgeted: the prompt stays near the length asked for.
      const int64_t tokens = static_cast<int64_t>(tok_->encode(c.prompt).ids.size());
      QVERIFY2(std::abs(tokens - 3000) <= 12, qPrintable(QString("%1 tokens for 3000").arg(tokens)));
    }
    QVERIFY2(marks >= 20, qPrintable(QString("%1 marks in five cases of 3,000 tokens at 10 per 1,000").arg(marks)));
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
      QCOMPARE(again.key, cs.at("key").as_string());
      Encoding e = tok_->encode(again.prompt);
      std::string digits;
      for (const Json& p : cs.at("key_token_positions").as_array())
        digits += again.prompt.substr(e.begin[p.as_int()], e.end[p.as_int()] - e.begin[p.as_int()]);
      QCOMPARE(digits, again.key + again.key);
      QCOMPARE(cs.at("layers").as_array().size(), size_t(2));
      QVERIFY(cs.at("layers").as_array()[0].at("answer_attention").as_array().size() > 0);
      // The answer budget (3) is raised to hold the whole key and two more pieces after its
      // leading space, so a key is never cut by the budget. One read per answer position (the
      // last prompt token and each generated token but the last); the first agrees with the
      // recorded answer attention.
      const size_t answer_length = again.key.size() + 3;
      QCOMPARE(answer_token_budget(again, 3), static_cast<int64_t>(answer_length));
      QCOMPARE(answer_token_budget(again, 40), int64_t{40});
      QCOMPARE(cs.at("answer_pieces").as_array().size(), answer_length);
      const int64_t prompt_tokens = cs.at("prompt_tokens").as_int();
      const std::vector<Json>& key_positions = cs.at("key_token_positions").as_array();
      QCOMPARE(key_positions.size(), 2 * again.key.size());  // the tokenizer splits digits
      for (const Json& layer : cs.at("layers").as_array()) {
        const std::vector<Json>& reads = layer.at("answer_reads").as_array();
        QCOMPARE(reads.size(), answer_length);
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
                   static_cast<int64_t>(at - key_positions.begin()) % static_cast<int64_t>(again.key.size()));
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

  // Fact records locate the other facts' values and say how much of the answer's read went to
  // them; a single key's record has no such field.
  void factRecordsWeighTheOtherValues() {
    configure_cpu_runtime();
    PasskeyGenerator gen(*tok_, sentences_, Haystack::BookSentences);
    CaseSpec spec;
    spec.facts = 3;
    spec.key_digits_min = 4;
    spec.key_digits_max = 6;
    spec.wordings = parse_wordings("trained", true);
    const PasskeyCase c = gen.make(400, 0.5, 2, spec);
    const Encoding e = tok_->encode(c.prompt);
    std::string spelled, expected;
    for (int64_t p : other_value_positions(c, e.begin, e.end)) spelled += c.prompt.substr(e.begin[p], e.end[p] - e.begin[p]);
    for (size_t j = 0; j < c.needles.size(); ++j)
      if (static_cast<int64_t>(j) != c.asked) expected += c.needles[j].value;
    QCOMPARE(QString::fromStdString(spelled), QString::fromStdString(expected));  // the tokenizer splits digits
    // Each of those tokens names its fact and the value's character it holds.
    for (const auto& [p, at] : other_value_tokens(c, e.begin, e.end)) {
      QVERIFY(at.first >= 0 && at.first < static_cast<int64_t>(c.needles.size()) && at.first != c.asked);
      const std::string& value = c.needles[static_cast<size_t>(at.first)].value;
      QVERIFY(at.second >= 0 && at.second < static_cast<int64_t>(value.size()));
      QCOMPARE(c.prompt.substr(e.begin[p], e.end[p] - e.begin[p]), value.substr(static_cast<size_t>(at.second), 1));
    }
    const PasskeyCase single = gen.make(400, 0.5, 2);
    QVERIFY(other_value_positions(single, e.begin, e.end).empty());

    ModelConfig config;
    config.d_model = 16;
    config.n_layers = 2;
    config.summary_dim = 8;
    config.pool_slots = 400;
    config.tau_note = -1.0;      // every token is a note, and the pool keeps them all
    config.tau_retrieve = -1.0;  // always retrieve, so the answer's attention is recorded
    MemMambaModel m = MemMambaModel::random(config, 1);
    PasskeyGridOptions o;
    o.lengths = {256};
    o.depths = {0.5};
    o.samples = 2;
    o.max_new_tokens = 3;
    o.attention_topk = 400;
    o.spec = spec;
    o.run = m.default_options();
    const Json r = run_passkey_grid(m, *tok_, gen, o);
    for (const Json& cs : r.at("cases").as_array())
      for (const Json& layer : cs.at("layers").as_array()) {
        const double key = layer.at("answer_weight_on_key_notes").as_double();
        const double other = layer.at("answer_weight_on_other_values").as_double();
        double listed = 0;
        for (const Json& a : layer.at("answer_attention").as_array()) listed += a.at("weight").as_double();
        // With every token noted and kept, a random read spreads over the whole prompt: the
        // other values' notes get some of it, and never more than all of it.
        QVERIFY2(other > 0 && key > 0 && key + other <= listed + 1e-6,
                 qPrintable(QString("key %1, other %2 of %3").arg(key).arg(other).arg(listed)));
        // Each answer token's most-read other value: a fact not asked, one of its characters, a
        // weight within what all other values got at the first token.
        const std::vector<Json>& reads = layer.at("answer_reads").as_array();
        QVERIFY(!reads.empty());
        QVERIFY(reads[0].at("other_weight").as_double() <= other + 1e-9);
        QVERIFY(reads[0].at("other_fact").as_int() >= 0);  // every token is noted: some weight went there
        for (const Json& read : reads) {
          const int64_t fact = read.at("other_fact").as_int();
          if (fact < 0) continue;
          QVERIFY(fact != cs.at("asked").as_int() && fact < static_cast<int64_t>(spec.facts));
          const auto size = static_cast<int64_t>(cs.at("needles").as_array()[static_cast<size_t>(fact)].at("value").as_string().size());
          QVERIFY(read.at("other_char").as_int() >= 0 && read.at("other_char").as_int() < size);
        }
      }
    o.spec = CaseSpec{};
    const Json plain = run_passkey_grid(m, *tok_, gen, o);
    QVERIFY(!plain.at("cases").as_array()[0].at("layers").as_array()[0].contains("answer_weight_on_other_values"));
    QVERIFY(!plain.at("cases").as_array()[0].at("layers").as_array()[0].at("answer_reads").as_array()[0].contains("other_weight"));
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
