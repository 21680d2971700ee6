// `memmamba eval docs` results in the Passkey panel: read as a grid of noise documents x where
// the golden document stood, each cell's cases listed (and never run as a passkey case).
#include <QSignalSpy>
#include <QTextBrowser>
#include <QtTest/QtTest>

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
