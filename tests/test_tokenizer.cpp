#include <torch/torch.h>

#include <QtTest/QtTest>

#include "model/file_io.h"
#include "model/tokenizer.h"

using namespace memmamba;

namespace {
const std::string kShippedTokenizer = std::string(MEMMAMBA_SOURCE_DIR) + "/sample_data/tokenizer.model";
}

class TestTokenizer : public QObject {
  Q_OBJECT
  QTemporaryDir dir_;

 private Q_SLOTS:
  void offsetsPointBackIntoTheText() {
    Tokenizer tok = Tokenizer::load(kShippedTokenizer);
    QCOMPARE(tok.vocab_size(), int64_t(8192));
    const std::string text = "There is an important pass key hidden inside.\nThe pass key is 71432. Remember it. Caf\xC3\xA9 \xE2\x80\x94 ok";
    Encoding e = tok.encode(text);
    QVERIFY(e.ids.size() > 10);
    QCOMPARE(e.begin.size(), e.ids.size());
    int64_t last_end = 0;
    std::string digits;
    for (size_t i = 0; i < e.ids.size(); ++i) {
      QVERIFY(e.begin[i] >= last_end - 1 && e.begin[i] <= e.end[i] && e.end[i] <= static_cast<int64_t>(text.size()));
      last_end = e.end[i];
      const std::string surface = text.substr(e.begin[i], e.end[i] - e.begin[i]);
      if (surface.size() == 1 && std::isdigit(static_cast<unsigned char>(surface[0]))) digits += surface;
    }
    QCOMPARE(digits, std::string("71432"));  // digits are split, each maps to its own character
    QCOMPARE(tok.decode(e.ids), std::string("There is an important pass key hidden inside. The pass key is 71432. Remember it. Caf\xC3\xA9 \xE2\x80\x94 ok"));
  }

  void longTextsEncodeInPiecesWithGlobalOffsets() {
    Tokenizer tok = Tokenizer::load(kShippedTokenizer);
    std::string text;
    for (int i = 0; i < 4000; ++i) text += "Line " + std::to_string(i) + " of a long book.\n";
    Encoding e = tok.encode(text);
    const std::string tail = text.substr(e.begin.back(), e.end.back() - e.begin.back());
    QCOMPARE(tail, std::string("."));
    // Offsets keep increasing across the pieces the text was split into.
    for (size_t i = 1; i < e.begin.size(); ++i) QVERIFY(e.begin[i] >= e.begin[i - 1]);
  }

  void coexistsWithTorchInOneProcess() {
    Tokenizer tok = Tokenizer::load(kShippedTokenizer);
    auto ids = tok.encode("hello world").ids;
    auto t = torch::tensor(std::vector<int64_t>(ids.begin(), ids.end()));
    QCOMPARE(t.sum().item<int64_t>(), std::accumulate(ids.begin(), ids.end(), int64_t{0}));
    QCOMPARE(torch::matmul(torch::ones({4, 4}), torch::ones({4, 1})).sum().item<float>(), 16.f);
  }

  void trainsASmallTokenizer() {
    const std::string corpus = std::string(MEMMAMBA_SOURCE_DIR) + "/sample_data/Alice-s-Adventures-in-Wonderland_11.txt";
    const std::string prefix = dir_.filePath("small").toStdString();
    Tokenizer::train({corpus}, prefix, 600, 10000);
    Tokenizer tok = Tokenizer::load(prefix + ".model");
    QCOMPARE(tok.vocab_size(), int64_t(600));
    QCOMPARE(tok.decode(tok.encode("the lazy fox 42").ids), std::string("the lazy fox 42"));
  }

  void refusesBadModels() {
    const std::string garbage = dir_.filePath("garbage.model").toStdString();
    write_file_atomic(garbage, std::string("this is not a protobuf \x01\x02\x03", 26));
    QVERIFY_THROWS_EXCEPTION(TokenizerError, Tokenizer::load(garbage));
    QVERIFY_THROWS_EXCEPTION(TokenizerError, Tokenizer::load(dir_.filePath("missing.model").toStdString()));
    const std::string empty = dir_.filePath("empty.model").toStdString();
    write_file_atomic(empty, "");
    QVERIFY_THROWS_EXCEPTION(TokenizerError, Tokenizer::load(empty));
    QVERIFY_THROWS_EXCEPTION(TokenizerError, Tokenizer::load(dir_.path().toStdString()));  // a directory
    Tokenizer tok = Tokenizer::load(kShippedTokenizer);
    QVERIFY_THROWS_EXCEPTION(TokenizerError, tok.decode({1, 99999}));
  }
};

QTEST_APPLESS_MAIN(TestTokenizer)
#include "test_tokenizer.moc"
