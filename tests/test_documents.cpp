#include <QtTest/QtTest>

#include "model/eval/documents.h"
#include "model/text_input.h"

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

  void refusesBadInput() {
    QVERIFY_THROWS_EXCEPTION(std::invalid_argument, DocumentRetrievalGenerator({"only one"}));
    DocumentRetrievalGenerator gen(paragraphs_);
    QVERIFY_THROWS_EXCEPTION(std::invalid_argument, gen.make(1000, 1));
  }
};

QTEST_APPLESS_MAIN(TestDocuments)
#include "test_documents.moc"
