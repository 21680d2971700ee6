#include <QtTest/QtTest>

#include "model/file_io.h"
#include "model/text_input.h"

using namespace memmamba;

class TestTextInput : public QObject {
  Q_OBJECT
  QTemporaryDir dir_;
  std::string write(const char* name, const std::string& bytes) {
    const std::string p = dir_.filePath(name).toStdString();
    write_file_atomic(p, bytes);
    return p;
  }
  template <typename Fn>
  void expect_message(Fn fn, const std::string& needle) {
    try {
      fn();
      QFAIL(("accepted; expected an error about " + needle).c_str());
    } catch (const TextError& e) {
      QVERIFY2(std::string(e.what()).find(needle) != std::string::npos, e.what());
    }
  }

 private Q_SLOTS:
  void normalisesBomAndLineEnds() {
    QCOMPARE(load_text_file(write("a.txt", "\xEF\xBB\xBFOne\r\nTwo\rThree\n")), std::string("One\nTwo\nThree\n"));
    QCOMPARE(load_text_file(write("b.txt", "caf\xC3\xA9 \xF0\x9F\x98\x80")), std::string("caf\xC3\xA9 \xF0\x9F\x98\x80"));
  }
  void refusesWhatIsNotText() {
    expect_message([&] { load_text_file(write("empty.txt", "")); }, "is empty");
    expect_message([&] { load_text_file(write("blank.txt", "  \n\t\n")); }, "is empty");
    expect_message([&] { load_text_file(write("bin.txt", std::string("PK\x03\x04\0\0abc", 9))); }, "binary");
    expect_message([&] { load_text_file(write("latin1.txt", "ok\nna\xEFve")); }, "not valid UTF-8: bad byte 0xEF at offset 5 (line 2)");
    expect_message([&] { load_text_file(write("overlong.txt", "\xC0\xAF")); }, "not valid UTF-8");
    expect_message([&] { load_text_file(write("surrogate.txt", "\xED\xA0\x80")); }, "not valid UTF-8");
    expect_message([&] { load_text_file(write("cut.txt", "abc\xE2\x82")); }, "not valid UTF-8");
    expect_message([&] { load_text_file(write("utf16.txt", "\xFF\xFEh\0i\0")); }, "UTF-16");
    expect_message([&] { load_text_file(dir_.path().toStdString()); }, "is a directory");
    expect_message([&] { load_text_file(dir_.filePath("nope.txt").toStdString()); }, "cannot open");
    expect_message([&] { load_text_file(write("big.txt", std::string(2000, 'a')), 1000); }, "more than the limit");
  }
  void loadsFiftyMegabytes() {
    std::string line = "It was the best of times, it was the worst of times \xE2\x80\x94 na\xC3\xAFve.\r\n";
    std::string big;
    big.reserve(52u << 20);
    while (big.size() < (50u << 20)) big += line;
    const std::string text = load_text_file(write("big.txt", big));
    QVERIFY(text.size() > (49u << 20));
    QVERIFY(text.find('\r') == std::string::npos);
  }
};

QTEST_APPLESS_MAIN(TestTextInput)
#include "test_text_input.moc"
