// `memmamba eval docs` results in the Passkey panel: read as a grid of noise documents x where
// the golden document stood, each cell's cases listed (and never run as a passkey case). And
// a passkey grid's clicked cell runs its first missed case, a failure being what one digs into.
#include <QSignalSpy>
#include <QTextBrowser>
#include <QtTest/QtTest>

#include <string>

#include "model/eval/passkey_grid.h"
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
    cases.push_back(documentCase(10, 1, 233, "512", false));
    cases.push_back(documentCase(10, 10, 98, "98", true));
    cases.push_back(documentCase(50, 25, 7, "8", false));
    r["cases"] = cases;
    const eval::PasskeyGrid grid = eval::parse_passkey_grid(r);
    QVERIFY(grid.documents);
    QCOMPARE(grid.lengths, (std::vector<int64_t>{10, 50}));
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
    QVERIFY(!details.contains(QStringLiteral("98")));  // the last third's case is another cell
    QVERIFY(panel.csv(QStringLiteral("passkey-grid"), views::CsvDetail::Figure).startsWith(QStringLiteral("noise_documents,")));
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
