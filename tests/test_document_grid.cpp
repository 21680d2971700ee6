// `memmamba eval docs` results in the Passkey panel: read as a grid of noise documents x where
// the golden document stood, each cell's cases listed (and never run as a passkey case). And
// a passkey grid's clicked cell runs its first missed case, a failure being what one digs into;
// a labelled-facts case names the other fact's value an answer token read instead of the key.
#include <QSignalSpy>
#include <QTextBrowser>
#include <QtTest/QtTest>

#include <algorithm>
#include <string>

#include "model/eval/passkey_grid.h"
#include "model/eval/retrieval_case.h"
#include "views/retrieval_panel.h"
#include "views/trace_document.h"

using namespace memmamba;

class TestDocumentGrid : public QObject {
  Q_OBJECT

  static Json documentCase(int64_t noise, int64_t golden_index, int64_t golden_id, const std::string& answer, bool hit) {
    Json c = Json::object();
    c["noise_documents"] = noise;
    c["golden_index"] = golden_index;
    c["golden_id"] = golden_id;
    c["question"] = std::string("What is the code word of the old mill?");
    c["answer"] = answer;
    c["hit"] = hit;
    c["sample"] = int64_t{0};
    return c;
  }

 private Q_SLOTS:
  void aClickedCellRunsItsFirstMiss() {
    Json r = Json::object(), cells = Json::array(), cases = Json::array();
    for (const double depth : {0.1, 0.9}) {
      Json cell = Json::object();
      cell["length"] = int64_t{4096};
      cell["depth"] = depth;
      cell["accuracy"] = depth < 0.5 ? 1.0 : 1.0 / 3.0;
      cells.push_back(cell);
      // At 0.1 every case is found; at 0.9 the first of three is, the next two are not.
      for (int64_t sample = 0; sample < 3; ++sample) {
        Json c = Json::object();
        c["length"] = int64_t{4096};
        c["depth"] = depth;
        c["sample"] = sample;
        c["key"] = std::to_string(40000 + 100 * sample + (depth < 0.5 ? 1 : 9));
        const bool hit = depth < 0.5 || sample == 0;
        c["answer"] = hit ? c.at("key").as_string() + "." : std::string("12345.");
        c["hit"] = hit;
        cases.push_back(c);
      }
    }
    r["cells"] = cells;
    r["cases"] = cases;
    r["seed"] = int64_t{3};
    views::TraceDocument doc;
    views::RetrievalPanel panel(&doc);
    doc.setGrid(r, eval::parse_passkey_grid(r), QStringLiteral("grid.json"));
    QSignalSpy spy(&panel, &views::RetrievalPanel::caseSelected);
    panel.selectCell(0, 1);
    QCOMPARE(spy.count(), 1);
    QCOMPARE(spy.at(0).at(2).toString(), QStringLiteral("40109"));  // sample 1, the first miss
    QCOMPARE(spy.at(0).at(3).toULongLong(), 3ULL * 1000003ULL + 1);
    panel.selectCell(0, 0);
    QCOMPARE(spy.count(), 2);
    QCOMPARE(spy.at(1).at(2).toString(), QStringLiteral("40001"));  // no miss: the first case
    QCOMPARE(spy.at(1).at(3).toULongLong(), 3ULL * 1000003ULL);
  }

  void cellsCountTheGoldenIdsByPosition() {
    QCOMPARE(eval::document_position_bin(0, 10), 1.0 / 6.0);
    QCOMPARE(eval::document_position_bin(5, 10), 0.5);
    QCOMPARE(eval::document_position_bin(10, 10), 5.0 / 6.0);
    QCOMPARE(eval::document_position_bin(0, 0), 1.0 / 6.0);
    Json r = Json::object();
    r["evaluation"] = std::string("noisy_document_retrieval");
    Json cases = Json::array();
    cases.push_back(documentCase(10, 0, 417, "417|>", true));
    Json wrong_document = documentCase(10, 1, 233, "512", false);
    wrong_document["answered"] = std::string("other document");
    // Its reads: layer 0 is not the deepest and is left out; the deepest read document 3's id,
    // then the golden id's second digit, then the fact.
    wrong_document["reads"] = Json::parse(R"([
      {"layer": 0, "answer_token": 0, "top_region": "golden id", "top_document": 1, "top_id_char": 0, "top_weight": 0.9},
      {"layer": 1, "answer_token": 0, "top_region": "other id", "top_document": 2, "top_id_char": 0, "top_weight": 0.5},
      {"layer": 1, "answer_token": 1, "top_region": "golden id", "top_document": 1, "top_id_char": 1, "top_weight": 0.4},
      {"layer": 1, "answer_token": 2, "top_region": "fact", "top_document": -1, "top_id_char": -1, "top_weight": 0.3}])");
    QCOMPARE(eval::document_read_path(wrong_document), std::string("document 3's id digit 1, golden id digit 2, the fact"));
    QCOMPARE(eval::document_read_path(documentCase(10, 0, 417, "417|>", true)), std::string());
    // A byte piece reads as its character; the third token's piece is missing.
    wrong_document["answer_pieces"] = Json::parse(R"(["\u2581", "<0x35>"])");
    QCOMPARE(eval::document_read_path(wrong_document),
             std::string("\"\u2581\" \u2190 document 3's id digit 1, \"5\" \u2190 golden id digit 2, the fact"));
    QCOMPARE(eval::readable_piece("<0x39>"), std::string("9"));
    QCOMPARE(eval::readable_piece("<0x0A>"), std::string("<0x0A>"));  // not printable: kept
    QCOMPARE(eval::readable_piece("<0xZZ>"), std::string("<0xZZ>"));
    QCOMPARE(eval::readable_piece("\u2581the"), std::string("\u2581the"));
    cases.push_back(wrong_document);
    cases.push_back(documentCase(10, 10, 98, "98", true));
    cases.push_back(documentCase(50, 25, 7, "8", false));
    r["cases"] = cases;
    const eval::PasskeyGrid grid = eval::parse_passkey_grid(r);
    QVERIFY(grid.documents);
    QCOMPARE(grid.lengths, (std::vector<int64_t>{10, 50}));
    // Only cases that say what they answered count among the named misses (the last one does not).
    QCOMPARE(eval::grid_breakdown(r).describe(),
             std::string("Of 1 miss, 1 named another document, 0 cut the golden id short and 0 named no document. "
                         "In the last layer the answer's first digit was read from the golden id in 1 of 1 answers "
                         "with a digit (0 hits) and from another document's id in 0 (0 hits)."));
    QCOMPARE(grid.depths.size(), size_t{3});
    QCOMPARE(grid.accuracy[0][0], 0.5);  // 10 documents, first third: one of two
    QVERIFY(std::isnan(grid.accuracy[0][1]));
    QCOMPARE(grid.accuracy[0][2], 1.0);
    QCOMPARE(grid.accuracy[1][1], 0.0);
    QVERIFY(std::isnan(grid.digit_accuracy[0][0]));

    views::TraceDocument doc;
    views::RetrievalPanel panel(&doc);
    doc.setGrid(r, grid, QStringLiteral("docs.json"));
    QSignalSpy spy(&panel, &views::RetrievalPanel::caseSelected);
    panel.selectCell(0, 0);
    QCOMPARE(spy.count(), 0);  // listed, not run
    const QString details = panel.findChild<QTextBrowser*>()->toPlainText();
    QVERIFY2(details.contains(QStringLiteral("10 noise documents, the golden one in the first third: accuracy 0.5")),
             qPrintable(details));
    QVERIFY(details.contains(QStringLiteral("417")) && details.contains(QStringLiteral("233")));
    QVERIFY2(details.contains(QStringLiteral("answer 512 \u2014 missed: another document's id")), qPrintable(details));
    QVERIFY2(details.contains(QStringLiteral("last layer's reads, answer token by token: \"\u2581\" \u2190 document 3's id "
                                             "digit 1, \"5\" \u2190 golden id digit 2, the fact")),
             qPrintable(details));
    QVERIFY(details.contains(QStringLiteral("answer 417|> \u2014 found")));  // no "answered": nothing added
    QVERIFY(!details.contains(QStringLiteral("98")));  // the last third's case is another cell
    QVERIFY(panel.csv(QStringLiteral("passkey-grid"), views::CsvDetail::Figure).startsWith(QStringLiteral("noise_documents,")));
  }

  // The breakdown counts where the last layer read the answer's first digit (the first piece
  // with a digit, a byte piece included), hits apart; malformed reads count nowhere.
  void breakdownCountsWhereTheFirstDigitWasRead() {
    auto withReads = [](int64_t golden_index, const char* pieces, const char* reads, bool hit) {
      Json c = documentCase(10, golden_index, 500, hit ? "500" : "12", hit);
      c["answered"] = std::string(hit ? "golden" : "other document");
      c["answer_pieces"] = Json::parse(pieces);
      c["reads"] = Json::parse(reads);
      return c;
    };
    const char* golden_second = R"([{"layer": 2, "answer_token": 0, "top_document": 7, "top_region": "other id"},
                                    {"layer": 2, "answer_token": 1, "top_document": 3, "top_region": "golden id"},
                                    {"layer": 1, "answer_token": 1, "top_document": 7, "top_region": "other id"}])";
    Json r = Json::object(), cases = Json::array();
    cases.push_back(withReads(3, R"(["\u2581", "<0x35>", "0"])", golden_second, true));       // golden, a hit
    cases.push_back(withReads(3, R"(["\u25815", "0"])", golden_second, false));              // token 0: document 7
    cases.push_back(withReads(7, R"(["\u25815", "0"])", golden_second, true));               // document 7 is golden
    cases.push_back(withReads(3, R"(["\u2581is", "\u2581a"])", golden_second, false));      // no digit
    cases.push_back(withReads(3, R"(["1", "2"])", R"([{"layer": "deep", "answer_token": 0}])", false));  // malformed
    cases.push_back(withReads(3, R"(["1", "2"])", R"([{"layer": 0, "answer_token": 0, "top_document": -1,
                                                        "top_region": "fact"}])", false));
    r["evaluation"] = std::string("noisy_document_retrieval");
    r["cases"] = cases;
    const eval::GridBreakdown b = eval::grid_breakdown(r);
    QCOMPARE(b.first_digit_reads.golden, int64_t(2));
    QCOMPARE(b.first_digit_reads.golden_hits, int64_t(2));
    QCOMPARE(b.first_digit_reads.other, int64_t(1));
    QCOMPARE(b.first_digit_reads.other_hits, int64_t(0));
    QCOMPARE(b.first_digit_reads.elsewhere, int64_t(1));
    QCOMPARE(eval::document_read_path(cases.as_array()[4]), std::string());
    QCOMPARE(eval::first_digit_read_document(cases.as_array()[4]), int64_t(-2));
    QCOMPARE(eval::first_digit_read_document(cases.as_array()[3]), int64_t(-2));
  }

  // A run-on read from another fact: the answer token after the key's last digit drew more
  // from digit 3 of another value than from any key note, and the table says which.
  void aReadOfAnotherFactNamesIt() {
    Json r = Json::parse(R"({"length": 16384, "depth": 0.9, "actual_depth": 0.9, "prompt_tokens": 300,
      "key": "25085", "answer": "250859.", "hit": false, "digits_right": 5, "asked": 2, "answered_other_fact": "",
      "needles": [{"label": "red door", "value": "7787312"}, {"label": "blue box", "value": "16213931"},
                  {"label": "old mill", "value": "25085"}, {"label": "grey gate", "value": "80559939"}],
      "answer_pieces": ["\u2581", "2", "5", "0", "8", "5", "<0x39>", "."]})");
    Json reads = Json::array();
    for (int64_t i = 0; i < 7; ++i) {
      Json read = Json::object();
      read["position"] = 299 + i;
      const bool run_on = i == 6;  // the token after the key's last digit (after the space piece)
      read["top_key_weight"] = run_on ? 0.10 : 0.80;
      read["weight_on_key_notes"] = run_on ? 0.12 : 0.85;
      read["top_key_source"] = int64_t{40} + i;
      read["key_digit"] = run_on ? int64_t{4} : std::max<int64_t>(0, i - 1);
      read["other_fact"] = run_on ? int64_t{3} : int64_t{0};
      read["other_char"] = run_on ? int64_t{2} : int64_t{1};
      read["other_weight"] = run_on ? 0.62 : 0.30;
      reads.push_back(read);
    }
    Json layer = Json::object();
    layer["answer_reads"] = reads;
    Json layers = Json::array();
    layers.push_back(layer);
    r["layers"] = layers;
    views::TraceDocument doc;
    views::RetrievalPanel panel(&doc);
    panel.showCase(r);
    const QString text = panel.findChild<QTextBrowser*>()->toPlainText();
    QVERIFY2(text.contains(QStringLiteral("5 (digit 3 of 80559939, grey gate) 0.62")), qPrintable(text));
    QVERIFY2(text.contains(QStringLiteral("2 (digit 1) 0.80")), qPrintable(text));  // the key outweighs 0.30
    QVERIFY2(!text.contains(QStringLiteral("7787312, red door")), qPrintable(text));
    QVERIFY2(text.contains(QStringLiteral("After the key's last character, 1 of 1 layers read grey gate's value 80559939")),
             qPrintable(text));
    QVERIFY2(!text.contains(QStringLiteral("<0x39>")), qPrintable(text));  // the byte piece is shown as "9"
  }

  // The bundled models' docs results open as they are saved in docs/grids.
  void bundledResultsOpen() {
    Json results;
    const eval::PasskeyGrid grid =
        eval::load_passkey_grid(std::string(MEMMAMBA_SOURCE_DIR) + "/docs/grids/docs-memmamba-small.json", &results);
    QVERIFY(grid.documents);
    QCOMPARE(grid.lengths, (std::vector<int64_t>{10, 20, 50}));
    QCOMPARE(results.at("cases").as_array().size(), size_t{30});
  }
};

QTEST_MAIN(TestDocumentGrid)
#include "test_document_grid.moc"
