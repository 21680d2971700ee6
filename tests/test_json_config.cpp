#include <QtTest/QtTest>

#include "model/config.h"
#include "model/json.h"

using namespace memmamba;

class TestJsonConfig : public QObject {
  Q_OBJECT
 private Q_SLOTS:
  void parsesAndDumpsRoundTrip() {
    const std::string text = "{\"a\": [1, 2.5, -3e2, true, null], \"b\": {\"c\": \"x\\\"y\\u00e9\\n\"}, \"big\": 9007199254740993}";
    Json j = Json::parse(text);
    QCOMPARE(j.at("a").as_array().size(), size_t(5));
    QCOMPARE(j.at("a").as_array()[1].as_double(), 2.5);
    QCOMPARE(j.at("a").as_array()[2].as_double(), -300.0);
    QCOMPARE(j.at("b").at("c").as_string(), std::string("x\"y\xC3\xA9\n"));
    QCOMPARE(j.at("big").as_int(), int64_t(9007199254740993LL));  // exact beyond 2^53
    Json again = Json::parse(j.dump(2));
    QCOMPARE(again.dump(), j.dump());
  }
  void floatsKeepTheirValue() {
    for (double v : {0.3, 1e-5, 0.1 + 0.2, 123456.789, 2.0}) {
      Json j(v);
      QCOMPARE(Json::parse(j.dump()).as_double(), v);
      QVERIFY(!Json::parse(j.dump()).is_integer());
    }
  }
  void refusesBadJson() {
    const char* bad[] = {"", "{", "[1,]", "{\"a\":1,}", "{\"a\" 1}", "\"\\ud800\"", "nul", "01", "1.", "{\"a\":1}x",
                         "{\"a\":1,\"a\":2}", "\"tab\there\""};
    for (const char* b : bad) QVERIFY_THROWS_EXCEPTION(JsonError, Json::parse(b));
    std::string deep(1000, '[');
    QVERIFY_THROWS_EXCEPTION(JsonError, Json::parse(deep));
  }
  void configRoundTripsThroughAFile() {
    ModelConfig c;
    c.note_window = 4;
    c.pool_policy = PoolPolicy::Fifo;
    c.fusion = FusionKind::Gated;
    c.tau_note = 0.25;
    c.fusion_gain = 2.5;
    c.memory_context = 8;
    QTemporaryDir dir;
    const std::string path = dir.filePath("c.json").toStdString();
    c.save(path);
    ModelConfig d = ModelConfig::load(path);
    QVERIFY(c == d);
    QCOMPARE(d.note_window, int64_t(4));
    QCOMPARE(d.fusion_gain, 2.5);
    QCOMPARE(d.memory_context, int64_t(8));
    QCOMPARE(ModelConfig::from_json(Json::parse("{}")).memory_context, int64_t(1));  // older checkpoints: the token alone
    QVERIFY(!ModelConfig().to_json().contains("memory_context"));  // files without a mix stay readable by older builds
    QCOMPARE(ModelConfig::from_json(Json::parse("{}")).fusion_gain, 1.0);  // older checkpoints: as trained
    QCOMPARE(d.inner(), int64_t(512));
    QCOMPARE(d.rank(), int64_t(16));
  }
  void configRefusesBadValues() {
    auto load = [](const std::string& text) { return ModelConfig::from_json(Json::parse(text)); };
    QVERIFY_THROWS_EXCEPTION(std::invalid_argument, load("{\"d_modle\": 256}"));       // typo
    QVERIFY_THROWS_EXCEPTION(std::invalid_argument, load("{\"d_model\": -1}"));
    QVERIFY_THROWS_EXCEPTION(std::invalid_argument, load("{\"d_model\": \"big\"}"));
    QVERIFY_THROWS_EXCEPTION(std::invalid_argument, load("{\"pool_policy\": \"lru\"}"));
    QVERIFY_THROWS_EXCEPTION(std::invalid_argument, load("{\"note_window\": 0}"));
    QVERIFY_THROWS_EXCEPTION(std::invalid_argument, load("{\"fusion_gain\": -1}"));
    QVERIFY_THROWS_EXCEPTION(std::invalid_argument, load("{\"memory_context\": 0}"));
    QVERIFY_THROWS_EXCEPTION(std::invalid_argument, load("{\"memory_context\": 65}"));
    QVERIFY_THROWS_EXCEPTION(std::invalid_argument, load("{\"fusion_gain\": 1e9}"));
    QVERIFY_THROWS_EXCEPTION(std::invalid_argument, load("{\"cross_layer_groups\": 9, \"n_layers\": 8}"));
    QVERIFY_THROWS_EXCEPTION(std::invalid_argument, load("[1, 2]"));
    QCOMPARE(load("{\"n_layers\": 2, \"memory\": false}").memory, false);
  }
};

QTEST_APPLESS_MAIN(TestJsonConfig)
#include "test_json_config.moc"
