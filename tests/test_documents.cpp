// Training rows of the retrieval tasks beyond the single key: DeciMamba's documents, and
// labelled facts whose every fact is asked.
#include <QtTest/QtTest>

#include <algorithm>
#include <cmath>
#include <map>
#include <random>
#include <set>

#include "model/eval/documents.h"
#include "model/eval/documents_eval.h"
#include "model/eval/passkey.h"
#include "model/text_input.h"
#include "model/tokenizer.h"
#include "model/memmamba.h"
#include "model/train/losses.h"
#include "model/train/token_shards.h"
#include "model/train/training_rows.h"
#include "tests/test_helpers.h"

using namespace memmamba;
using namespace memmamba::eval;

class TestDocuments : public QObject {
  Q_OBJECT
  std::vector<std::string> paragraphs_;

 private Q_SLOTS:
  void initTestCase() {
    paragraphs_ = split_paragraphs(
        memmamba::load_text_file(std::string(MEMMAMBA_SOURCE_DIR) + "/sample_data/The-Time-Machine_35.txt"));
    QVERIFY(paragraphs_.size() > 100);
    for (const auto& p : paragraphs_) QVERIFY(p.find('\n') == std::string::npos);
  }

  void buildsTheFormatWithOneGoldenDocument() {
    DocumentRetrievalGenerator gen(paragraphs_);
    for (int64_t noise : {0, 10, 200}) {
      for (uint64_t seed = 0; seed < 3; ++seed) {
        DocumentCase c = gen.make(noise, seed);
        QCOMPARE(c.ids.size(), size_t(noise + 1));
        QCOMPARE(std::set<int64_t>(c.ids.begin(), c.ids.end()).size(), c.ids.size());
        for (int64_t id : c.ids) QVERIFY(id >= 0 && id <= 999);
        QCOMPARE(c.ids[c.golden_index], c.golden_id);
        // The fact appears once, inside the golden document.
        const size_t fact = c.prompt.find(c.fact);
        QVERIFY(fact != std::string::npos);
        QCOMPARE(c.prompt.find(c.fact, fact + 1), std::string::npos);
        const std::string header = "<|Document " + std::to_string(c.golden_id) + "|> ";
        const size_t golden = c.prompt.find(header);
        QVERIFY(golden != std::string::npos && golden < fact);
        QVERIFY(c.prompt.find("<|Query|>", golden) > fact);  // before the next document
        size_t queries = 0;
        for (size_t at = c.prompt.find("<|Query|> " + c.question); at != std::string::npos;
             at = c.prompt.find("<|Query|> " + c.question, at + 1))
          ++queries;
        QCOMPARE(queries, size_t(noise + 1));
        const std::string tail = " <|Answer|> <|Document ";
        QCOMPARE(c.prompt.substr(c.prompt.size() - tail.size()), tail);
      }
    }
    QCOMPARE(gen.make(20, 5).prompt, gen.make(20, 5).prompt);
    QVERIFY(gen.make(20, 5).prompt != gen.make(20, 6).prompt);
  }

  void scoresExactMatch() {
    QVERIFY(document_answer_correct("38|>", 38));
    QVERIFY(document_answer_correct(" 38|> and more", 38));
    QVERIFY(document_answer_correct("7", 7));
    QVERIFY(!document_answer_correct("380|>", 38));
    QVERIFY(!document_answer_correct("038|>", 38));
    QVERIFY(!document_answer_correct("x38|>", 38));
    QVERIFY(!document_answer_correct("", 38));
  }

  // A miss is another document's id, the golden id cut short or no document's id; the golden one
  // is a hit whatever follows.
  void namesWhatAnAnswerNames() {
    const std::vector<int64_t> ids = {7, 38, 512, 0};
    QCOMPARE(classify_document_answer(" 38|> and more", 38, ids), DocumentAnswer::Golden);
    QCOMPARE(classify_document_answer("512|>", 38, ids), DocumentAnswer::OtherDocument);
    QCOMPARE(classify_document_answer("0", 38, ids), DocumentAnswer::OtherDocument);
    QCOMPARE(classify_document_answer("7. Say", 38, ids), DocumentAnswer::OtherDocument);
    QCOMPARE(classify_document_answer("is a very good", 38, ids), DocumentAnswer::NoDocumentId);
    QCOMPARE(classify_document_answer(". 18", 38, ids), DocumentAnswer::NoDocumentId);
    QCOMPARE(classify_document_answer("3. Say", 38, ids), DocumentAnswer::GoldenCutShort);
    QCOMPARE(classify_document_answer("51", 512, ids), DocumentAnswer::GoldenCutShort);
    QCOMPARE(classify_document_answer("5", 512, ids), DocumentAnswer::GoldenCutShort);
    QCOMPARE(classify_document_answer("7", 712, ids), DocumentAnswer::OtherDocument);  // an id before a prefix
    QCOMPARE(classify_document_answer("99", 38, ids), DocumentAnswer::NoDocumentId);     // no document has it
    QCOMPARE(classify_document_answer("0512", 38, ids), DocumentAnswer::NoDocumentId);   // ids have no leading zero
    QCOMPARE(classify_document_answer("5120", 38, ids), DocumentAnswer::NoDocumentId);   // four digits
    QCOMPARE(classify_document_answer("", 38, ids), DocumentAnswer::NoDocumentId);
    QCOMPARE(std::string(document_answer_name(DocumentAnswer::OtherDocument)), std::string("other document"));
    QCOMPARE(std::string(document_answer_name(DocumentAnswer::GoldenCutShort)), std::string("golden cut short"));
    QCOMPARE(std::string(document_answer_name(DocumentAnswer::NoDocumentId)), std::string("no document id"));
  }

  // Each prompt token's part: the golden id's tokens spell the golden id, each other id's its
  // own, the fact's tokens the fact; the answer's marks and the texts are neither.
  void marksEachTokensRegion() {
    const Tokenizer tok = Tokenizer::load(std::string(MEMMAMBA_SOURCE_DIR) + "/sample_data/tokenizer.model");
    DocumentRetrievalGenerator gen(paragraphs_);
    for (uint64_t seed = 0; seed < 4; ++seed) {
      const DocumentCase c = gen.make(12, seed);
      QCOMPARE(c.id_spans.size(), c.ids.size());
      QCOMPARE(c.query_spans.size(), c.ids.size());
      QCOMPARE(c.prompt.substr(c.fact_span.first, c.fact_span.second - c.fact_span.first), c.fact);
      const Encoding enc = tok.encode(c.prompt);
      const std::vector<TokenRegion> regions = document_token_regions(c, enc.begin, enc.end);
      QCOMPARE(regions.size(), enc.ids.size());
      std::map<int64_t, std::string> id_text;
      std::string fact_text, query_text;
      for (size_t t = 0; t < regions.size(); ++t) {
        const std::string piece = c.prompt.substr(static_cast<size_t>(enc.begin[t]), static_cast<size_t>(enc.end[t] - enc.begin[t]));
        switch (regions[t].region) {
          case DocumentRegion::GoldenId:
          case DocumentRegion::OtherId:
            QCOMPARE(regions[t].region == DocumentRegion::GoldenId, regions[t].document == c.golden_index);
            QCOMPARE(regions[t].id_char, static_cast<int64_t>(id_text[regions[t].document].size()));
            id_text[regions[t].document] += piece;
            break;
          case DocumentRegion::Fact: fact_text += piece; break;
          case DocumentRegion::Query: query_text += piece; break;
          default: QCOMPARE(regions[t].document, int64_t(-1));
        }
      }
      QCOMPARE(id_text.size(), c.ids.size());
      for (const auto& [document, text] : id_text) QCOMPARE(text, std::to_string(c.ids[static_cast<size_t>(document)]));
      QVERIFY2(fact_text.find(c.fact.substr(1, c.fact.size() - 2)) != std::string::npos, fact_text.c_str());
      QVERIFY(fact_text.size() <= c.fact.size() + 2);
      QVERIFY(query_text.find(c.question) != std::string::npos);
      QCOMPARE(regions.back().region, DocumentRegion::Marks);  // "<|Document " that the answer follows
    }
    QVERIFY_THROWS_EXCEPTION(std::invalid_argument, document_token_regions(gen.make(3, 0), {0, 1}, {1}));
  }

  // The answer's reads: each attention row's weight summed by the region of the note it reads
  // (a note of several tokens takes its most telling one), and the note read most.
  void weighsTheAnswersReadsByRegion() {
    const std::vector<TokenRegion> regions = {{DocumentRegion::Text, -1, -1},    {DocumentRegion::GoldenId, 1, 0},
                                              {DocumentRegion::GoldenId, 1, 1},  {DocumentRegion::OtherId, 0, 0},
                                              {DocumentRegion::Fact, -1, -1},    {DocumentRegion::Marks, -1, -1}};
    Trace trace;
    auto note = [&](std::vector<int64_t> sources) {
      NoteInfo n{0, static_cast<int64_t>(trace.notes.size()), 1, 1.0f, {}};
      for (int64_t s : sources) n.sources.push_back(s);
      trace.notes.push_back(n);
    };
    note({0, 2});  // text and the golden id's second digit: counts as the golden id
    note({3});
    note({4});
    trace.layers.resize(2);
    AttentionRows& rows = trace.layers[1].token_attention;
    auto row = [&](int64_t position, std::vector<std::pair<int64_t, float>> reads) {
      rows.token.push_back(position);
      for (const auto& [n, w] : reads) {
        rows.slot.push_back(static_cast<int32_t>(n));
        rows.layer.push_back(1);
        rows.note.push_back(n);
        rows.weight.push_back(w);
      }
      rows.offset.push_back(static_cast<int64_t>(rows.note.size()));
    };
    row(5, {{0, 0.25f}, {1, 0.5f}, {2, 0.125f}});
    row(6, {{0, 0.75f}});
    const Json reads = document_answer_reads(trace, regions, 6, 3);  // the third answer token has no row
    QCOMPARE(reads.as_array().size(), size_t(2));  // layer 0 recorded no rows
    const Json& first = reads.as_array()[0];
    QCOMPARE(first.at("layer").as_int(), int64_t(1));
    QCOMPARE(first.at("answer_token").as_int(), int64_t(0));
    QCOMPARE(first.at("weights").at("golden id").as_double(), 0.25);
    QCOMPARE(first.at("weights").at("other id").as_double(), 0.5);
    QCOMPARE(first.at("weights").at("fact").as_double(), 0.125);
    QCOMPARE(first.at("weights").at("text").as_double(), 0.0);
    QCOMPARE(first.at("top_region").as_string(), std::string("other id"));
    QCOMPARE(first.at("top_document").as_int(), int64_t(0));
    const Json& second = reads.as_array()[1];
    QCOMPARE(second.at("answer_token").as_int(), int64_t(1));
    QCOMPARE(second.at("top_region").as_string(), std::string("golden id"));
    QCOMPARE(second.at("top_id_char").as_int(), int64_t(1));
    QCOMPARE(second.at("top_weight").as_double(), 0.75);
  }

  // A grid's records carry the reads, and each level's per-layer means are its cases' first
  // answer token's weights averaged; a run without the memory records none.
  void gridRecordsTheReads() {
    const Tokenizer tok = Tokenizer::load(std::string(MEMMAMBA_SOURCE_DIR) + "/sample_data/tokenizer.model");
    ModelConfig config = testing::tiny_config();
    config.vocab_size = tok.vocab_size();
    const MemMambaModel model = MemMambaModel::random(config, 3);
    DocumentRetrievalGenerator gen(paragraphs_);
    DocumentGridOptions o;
    o.noise_levels = {2, 4};
    o.samples = 2;
    const Json r = run_document_grid(model, tok, gen, o);
    double read_weight = 0;
    for (size_t level = 0; level < o.noise_levels.size(); ++level) {
      const Json& l = r.at("levels").as_array()[level];
      const auto& means = l.at("first_read_by_layer").as_array();
      QCOMPARE(means.size(), size_t(config.n_layers));
      for (int64_t layer = 0; layer < config.n_layers; ++layer)
        for (const char* region : {"golden id", "other id", "fact", "query", "marks", "text"}) {
          double sum = 0;
          for (int64_t s = 0; s < o.samples; ++s)
            for (const Json& read : r.at("cases").as_array()[level * 2 + static_cast<size_t>(s)].at("reads").as_array())
              if (read.at("layer").as_int() == layer && read.at("answer_token").as_int() == 0)
                sum += read.at("weights").at(region).as_double();
          QVERIFY(std::abs(means[static_cast<size_t>(layer)].at(region).as_double() - sum / o.samples) < 1e-9);
        }
    }
    for (const Json& c : r.at("cases").as_array())
      for (const Json& read : c.at("reads").as_array()) {
        double sum = 0;
        for (const auto& [region, weight] : read.at("weights").as_object()) {
          QVERIFY(weight.as_double() >= 0);
          sum += weight.as_double();
        }
        QVERIFY(sum <= 1 + 1e-3);  // six weights of four decimals each
        QVERIFY(read.at("top_weight").as_double() <= sum + 1e-3);
        read_weight += sum;
      }
    QVERIFY2(read_weight > 0, "the untrained model read no note: the test checks nothing");
    o.run.memory.enabled = false;
    const Json off = run_document_grid(model, tok, gen, o);
    QVERIFY(!off.at("cases").as_array()[0].contains("reads"));
    QVERIFY(!off.at("levels").as_array()[0].contains("first_read_by_layer"));
  }

  void refusesBadInput() {
    QVERIFY_THROWS_EXCEPTION(std::invalid_argument, DocumentRetrievalGenerator({"only one"}));
    DocumentRetrievalGenerator gen(paragraphs_);
    QVERIFY_THROWS_EXCEPTION(std::invalid_argument, gen.make(1000, 1));
  }

  // Document rows: DeciMamba's format from the shard's sentences, the golden id at the end of
  // the row, the answer loss on the id's pieces and no note to read; without them the rows are
  // exactly the rows of before.
  void documentRowsEndWithTheGoldenId() {
    const std::string tok_path = std::string(MEMMAMBA_SOURCE_DIR) + "/sample_data/tokenizer.model";
    const Tokenizer tok = Tokenizer::load(tok_path);
    const std::string book = load_text_file(std::string(MEMMAMBA_SOURCE_DIR) + "/sample_data/Alice-s-Adventures-in-Wonderland_11.txt");
    TokenShard train;
    train.vocab_size = static_cast<uint32_t>(tok.vocab_size());
    for (int32_t id : tok.encode(book).ids) train.tokens.push_back(static_cast<uint16_t>(id));
    TrainOptions o;
    o.config = testing::tiny_config();
    o.seed = 5;
    o.config.vocab_size = tok.vocab_size();
    o.seq_len = 900;
    o.passkey_fraction = 1;
    o.passkey_tokenizer = tok_path;
    o.passkey_shard_haystack = true;
    o.varied_cases = true;
    o.case_mix = "composed";
    const BatchMaker plain(o, train, 6);
    const torch::Tensor before = plain.make(0, 0, 4, nullptr);
    o.document_fraction = 1;
    const BatchMaker documents(o, train, 6);
    RetrievalTargets targets;
    int rows = 0;
    const torch::Tensor batch = documents.make(0, 0, 4, &rows, &targets);
    QCOMPARE(rows, 4);
    QVERIFY(targets.row.empty() && targets.other_value_row.empty());  // nothing for the memory's losses
    std::map<int64_t, std::string> id_of_row;
    for (size_t k = 0; k < targets.end_row.size(); ++k) {
      const int64_t r = targets.end_row[k], q = targets.end_query[k];
      id_of_row[r] += tok.decode({static_cast<int32_t>(batch[r][q + 1].item<int64_t>())});
    }
    QCOMPARE(static_cast<int64_t>(id_of_row.size()), int64_t{4});
    for (int64_t r = 0; r < 4; ++r) {
      std::vector<int32_t> ids;
      for (int64_t i = 0; i < batch.size(1); ++i) ids.push_back(static_cast<int32_t>(batch[r][i].item<int64_t>()));
      const std::string text = tok.decode(ids);
      const size_t answer = text.rfind("<|Answer|> <|Document ");
      QVERIFY2(answer != std::string::npos, qPrintable(QString::fromStdString(text.substr(text.size() - 200))));
      std::string id = id_of_row[r];
      id.erase(0, id.find_first_not_of(' '));
      QVERIFY(!id.empty() && id.find_first_not_of("0123456789") == std::string::npos);
      QCOMPARE(QString::fromStdString(text.substr(text.size() - id.size() - 2)), QString::fromStdString(id + "|>"));
      // The golden document is one of the row's: its id stands before a document with a fact.
      const size_t golden = text.find("<|Document " + id + "|> ");
      QVERIFY(golden != std::string::npos && golden < answer);
      const size_t next = text.find("<|Query|>", golden);
      QVERIFY(text.substr(golden, next - golden).find(" is ") != std::string::npos);
    }
    // The answer loss sees the document rows (they bring no passkey targets of their own).
    ModelConfig config = testing::tiny_config();
    config.vocab_size = tok.vocab_size();
    const MemMambaModel model = MemMambaModel::random(config, 3);
    LossWeights weights;
    weights.answer = 1;
    const SequenceLoss loss = sequence_loss(model, batch, &targets, weights);
    QVERIFY2(std::isfinite(loss.answer) && loss.answer > 0.5, qPrintable(QString::number(loss.answer)));
    // With document reads the same rows teach the memory: each id piece reads the same piece of
    // the golden header's id or the fact value's last piece; the first piece chooses.
    o.document_reads = true;
    RetrievalTargets reads;
    QVERIFY(torch::equal(BatchMaker(o, train, 6).make(0, 0, 4, nullptr, &reads), batch));
    QCOMPARE(reads.row.size(), targets.end_row.size());
    QVERIFY(reads.end_row.empty());
    auto piece = [&](int64_t r, int64_t p) { return tok.decode({static_cast<int32_t>(batch[r][p].item<int64_t>())}); };
    std::set<int64_t> chose;
    for (size_t k = 0; k < reads.row.size(); ++k) {
      const int64_t r = reads.row[k], q = reads.query[k];
      QCOMPARE(q, targets.end_query[k]);
      QVERIFY(reads.first[k] >= 0 && reads.first[k] < q && reads.second[k] > reads.first[k] && reads.second[k] < q);
      QCOMPARE(piece(r, reads.first[k]), piece(r, q + 1));  // the header holds the answer's piece
      const std::string value_end = piece(r, reads.second[k]);
      QVERIFY2(!value_end.empty() && std::isdigit(static_cast<unsigned char>(value_end.back())), value_end.c_str());
      QCOMPARE(piece(r, reads.second[k] + 1), std::string("."));
      const bool first_of_row = chose.insert(r).second;
      QCOMPARE(k < reads.choice.size() && reads.choice[k] == 1, first_of_row);
    }
    QCOMPARE(chose.size(), size_t{4});
    o.document_reads = false;
    // Rows longer than 4k tokens hold more than 30 documents (eval docs asks up to 50).
    {
      TrainOptions longer = o;
      longer.seq_len = 8192;
      const torch::Tensor rows8k = BatchMaker(longer, train, 6).make(0, 0, 24, nullptr);
      size_t most = 0;
      for (int64_t r = 0; r < rows8k.size(0); ++r) {
        std::vector<int32_t> ids;
        for (int64_t i = 0; i < rows8k.size(1); ++i) ids.push_back(static_cast<int32_t>(rows8k[r][i].item<int64_t>()));
        const std::string text = tok.decode(ids);
        size_t count = 0;
        for (size_t at = text.find("<|Query|>"); at != std::string::npos; at = text.find("<|Query|>", at + 1)) ++count;
        most = std::max(most, count);
      }
      QVERIFY2(most > 30, qPrintable(QString::number(most)));
    }
    o.document_fraction = 0;
    QVERIFY(torch::equal(BatchMaker(o, train, 6).make(0, 0, 4, nullptr), before));
    QVERIFY(!torch::equal(batch, before));
    // Documents are runs of 3-6 sentences.
    const std::vector<std::string> docs = sentence_documents({"A a a.", "B b.", "C.", "D.", "E.", "F.", "G.", "H."});
    QCOMPARE(docs.size(), size_t{2});
    QCOMPARE(QString::fromStdString(docs[0]), QStringLiteral("A a a. B b. C."));
    QCOMPARE(QString::fromStdString(docs[1]), QStringLiteral("D. E. F. G."));
  }

  // Rows with labelled facts can ask every fact: the follow-up questions come after the answer,
  // in an order that is not the text's, and each answer's pieces read the notes of its own value.
  void followUpQuestionsTeachEveryFact() {
    const Tokenizer tok = Tokenizer::load(std::string(MEMMAMBA_SOURCE_DIR) + "/sample_data/tokenizer.model");
    const PasskeyGenerator gen(tok, {}, Haystack::RepeatedFiller);
    CaseSpec spec;
    spec.facts = 4;
    spec.key_digits_min = 3;
    spec.key_digits_max = 8;
    spec.wordings = parse_wordings("trained", true);
    auto stripped = [](std::string piece) {
      piece.erase(std::remove(piece.begin(), piece.end(), ' '), piece.end());
      return piece;
    };
    int in_text_order = 0;
    for (uint64_t seed : {5u, 6u, 7u, 8u, 9u}) {
      const PasskeyCase c = gen.make(700, 0.5, seed, spec);
      std::string text = passkey_training_text(c);
      std::mt19937_64 rng(seed);
      std::vector<FollowUp> follow_ups;
      append_follow_ups(c, ".", rng, text, follow_ups);
      QCOMPARE(follow_ups.size(), size_t{3});
      std::set<size_t> needles;
      std::string values = c.key;
      for (const FollowUp& f : follow_ups) {
        QVERIFY(static_cast<int64_t>(f.needle) != c.asked);
        needles.insert(f.needle);
        const std::string question = fact_question(c, f.needle), value = c.needles[f.needle].value;
        QVERIFY(question.find(c.needles[f.needle].label) != std::string::npos);
        QCOMPARE(QString::fromStdString(text.substr(static_cast<size_t>(f.answer) - question.size(), question.size())),
                 QString::fromStdString(question));
        QCOMPARE(QString::fromStdString(text.substr(static_cast<size_t>(f.answer), value.size() + 1)),
                 QString::fromStdString(value + "."));
        values += value;
      }
      QCOMPARE(needles.size(), size_t{3});
      in_text_order += std::is_sorted(follow_ups.begin(), follow_ups.end(),
                                      [](const FollowUp& a, const FollowUp& b) { return a.needle < b.needle; });
      const Encoding enc = tok.encode(text);
      const int64_t shift = 9, row_length = static_cast<int64_t>(enc.ids.size()) + shift;
      RetrievalTargets t;
      add_retrieval_targets(c, enc, 1, row_length, t, false, follow_ups);
      // The pieces the answers predict spell every value in turn, and so do the needle pieces
      // their reads are taught to attend to.
      std::string answered, read;
      for (size_t i = 0; i < t.row.size(); ++i) {
        QCOMPARE(t.row[i], int64_t{1});
        const auto piece = [&](int64_t position) {
          const auto k = static_cast<size_t>(position - shift);
          return stripped(text.substr(static_cast<size_t>(enc.begin[k]), static_cast<size_t>(enc.end[k] - enc.begin[k])));
        };
        answered += piece(t.query[i] + 1);
        read += piece(t.first[i] >= 0 ? t.first[i] : t.second[i]);
      }
      QCOMPARE(QString::fromStdString(answered), QString::fromStdString(values));
      QCOMPARE(QString::fromStdString(read), QString::fromStdString(values));
      // Each answer's first read, and no other, chooses its value by the label.
      QCOMPARE(t.choice.size(), t.row.size());
      std::vector<size_t> choice_at, value_starts{0};
      for (size_t i = 0, at = 0; i < t.row.size(); ++i) {
        if (t.choice[i]) choice_at.push_back(at);
        const auto k = static_cast<size_t>(t.query[i] + 1 - shift);
        at += stripped(text.substr(static_cast<size_t>(enc.begin[k]), static_cast<size_t>(enc.end[k] - enc.begin[k]))).size();
      }
      for (size_t j = 0; j < follow_ups.size(); ++j)
        value_starts.push_back(value_starts.back() +
                               (j == 0 ? c.key.size() : c.needles[follow_ups[j - 1].needle].value.size()));
      QCOMPARE(choice_at, value_starts);
      QCOMPARE(t.end_row.size(), size_t{4});  // every answer's end
      RetrievalTargets asked_only;
      add_retrieval_targets(c, enc, 1, row_length, asked_only);
      QCOMPARE(asked_only.end_row.size(), size_t{1});
      QCOMPARE(std::count(asked_only.choice.begin(), asked_only.choice.end(), uint8_t{1}), std::ptrdiff_t{1});
      QCOMPARE(asked_only.choice.front(), uint8_t{1});
      // --teach-after-end: after each answer's end target, one at its stop that predicts what
      // follows it (the next question: a word); the row's last answer has nothing after it.
      RetrievalTargets after;
      add_retrieval_targets(c, enc, 1, row_length, after, false, follow_ups, true);
      QCOMPARE(after.row, t.row);
      QCOMPARE(after.end_row.size(), size_t{7});
      for (size_t i = 0; i + 1 < after.end_row.size(); i += 2) {
        const auto piece_at = [&](int64_t position) {
          const auto k = static_cast<size_t>(position - shift);
          return text.substr(static_cast<size_t>(enc.begin[k]), static_cast<size_t>(enc.end[k] - enc.begin[k]));
        };
        QCOMPARE(after.end_query[i + 1], after.end_query[i] + 1);
        QCOMPARE(QString::fromStdString(stripped(piece_at(after.end_query[i] + 1))), QStringLiteral("."));
        const std::string follows = piece_at(after.end_query[i + 1] + 1);
        QVERIFY2(std::any_of(follows.begin(), follows.end(), [](char ch) { return std::isalpha(static_cast<unsigned char>(ch)); }),
                 qPrintable(QString::fromStdString("after the stop: '" + follows + "'")));
      }
      QCOMPARE(after.end_query.back(), t.end_query.back());
    }
    QVERIFY2(in_text_order < 5, "follow-up questions ask the facts in the text's order");
    // A single key has no fact to follow up.
    const PasskeyCase one = gen.make(600, 0.5, 3);
    std::mt19937_64 rng(1);
    std::vector<FollowUp> none;
    std::string unchanged = "text";
    append_follow_ups(one, ".", rng, unchanged, none);
    QVERIFY(unchanged == "text" && none.empty());
    // ... and nothing to choose between: no read of its answer is a choice.
    RetrievalTargets single;
    const Encoding one_enc = tok.encode(passkey_training_text(one));
    add_retrieval_targets(one, one_enc, 0, static_cast<int64_t>(one_enc.ids.size()), single);
    QVERIFY(!single.row.empty());
    QCOMPARE(std::count(single.choice.begin(), single.choice.end(), uint8_t{1}), std::ptrdiff_t{0});
    QVERIFY_THROWS_EXCEPTION(std::invalid_argument, fact_question(one, 0));
  }
};

QTEST_APPLESS_MAIN(TestDocuments)
#include "test_documents.moc"
