// MemMamba Explorer: opens a text (runs the model on it) or a saved trace.
#include <QApplication>
#include <QCommandLineParser>
#include <QFileInfo>
#include <QTimer>

#include <cstdio>

#include "app/gui/main_window.h"
#include "model/log.h"

int main(int argc, char** argv) {
  QCoreApplication::setApplicationName(QStringLiteral("MemMamba Explorer"));
  QCoreApplication::setOrganizationName(QStringLiteral("MemMamba"));
  QCoreApplication::setApplicationVersion(QStringLiteral(MEMMAMBA_VERSION));
  QCommandLineParser parser;
  parser.setApplicationDescription(QStringLiteral("Explore the memory of the MemMamba model on long texts."));
  const QCommandLineOption help = parser.addHelpOption();
  const QCommandLineOption version = parser.addVersionOption();
  parser.addPositionalArgument(QStringLiteral("file"), QStringLiteral("A text to run the model on, or a .trace to open."));
  const QCommandLineOption trace({QStringLiteral("t"), QStringLiteral("trace")}, QStringLiteral("Open a saved trace."), QStringLiteral("FILE"));
  const QCommandLineOption checkpoint(QStringLiteral("checkpoint"), QStringLiteral("Model checkpoint (default: bundled)."), QStringLiteral("FILE"));
  const QCommandLineOption tokenizer(QStringLiteral("tokenizer"), QStringLiteral("SentencePiece model (default: bundled)."), QStringLiteral("FILE"));
  const QCommandLineOption device(QStringLiteral("device"), QStringLiteral("cpu or cuda (default: cuda when present)."), QStringLiteral("DEVICE"));
  const QCommandLineOption screenshots(QStringLiteral("screenshots"), QStringLiteral("After loading, save screenshots of every view into DIR and quit."), QStringLiteral("DIR"));
  parser.addOptions({trace, checkpoint, tokenizer, device, screenshots});

  // Read before the GUI starts, so --help, --version and bad flags need no display. Qt's own
  // options (-platform, -style ...) are unknown here: then the GUI starts first, removes
  // them, and the parser reads what is left.
  QStringList arguments;
  for (int i = 0; i < argc; ++i) arguments << QString::fromLocal8Bit(argv[i]);
  const bool parsed = parser.parse(arguments);
  if (parser.isSet(help) || arguments.contains(QStringLiteral("--help-all"))) {
    std::fputs(qPrintable(parser.helpText()), stdout);
    return 0;
  }
  if (parser.isSet(version)) {
    std::printf("%s %s\n", qPrintable(QCoreApplication::applicationName()), qPrintable(QCoreApplication::applicationVersion()));
    return 0;
  }
  auto check_flags = [&]() -> int {
    const QString dev = parser.value(device);
    if (!dev.isEmpty() && dev != QLatin1String("cpu") && dev != QLatin1String("cuda")) {
      std::fprintf(stderr, "--device must be cpu or cuda, not \"%s\"\n", qPrintable(dev));
      return 2;
    }
    if (dev == QLatin1String("cuda") && !memmamba::app::cudaAvailable()) {
      std::fprintf(stderr, "--device cuda: no CUDA device is available to this build\n");
      return 2;
    }
    for (const QCommandLineOption* o : {&checkpoint, &tokenizer, &trace})
      if (parser.isSet(*o) && !QFileInfo(parser.value(*o)).isFile()) {
        std::fprintf(stderr, "%s: no such file\n", qPrintable(parser.value(*o)));
        return 3;
      }
    return 0;
  };
  if (parsed)
    if (const int code = check_flags()) return code;

  QApplication app(argc, argv);
  QApplication::setWindowIcon(QIcon(QStringLiteral(":/memmamba-explorer.svg")));
  if (!parsed) {
    parser.process(app);  // reports what is still unknown once Qt has taken its own options
    if (const int code = check_flags()) return code;
  }

  memmamba::app::configureRuntime();
  const QString dev = parser.value(device);
  memmamba::app::MainWindow window;
  if (parser.isSet(checkpoint) || parser.isSet(tokenizer) || !dev.isEmpty())
    window.setModelChoice(parser.value(checkpoint), parser.value(tokenizer),
                          dev.isEmpty() ? memmamba::app::cudaAvailable() : dev == QLatin1String("cuda"));
  window.show();
  const QString shots = parser.value(screenshots);
  if (!shots.isEmpty()) {
    window.setBatchMode(true);
    auto finish = [&window, shots] {
      QTimer::singleShot(300, &window, [&window, shots] {
        window.saveScreenshots(shots);
        QApplication::quit();
      });
    };
    QObject::connect(&window, &memmamba::app::MainWindow::traceLoaded, &window, finish);
    QObject::connect(&window, &memmamba::app::MainWindow::runFailed, &window, [] { QApplication::exit(1); });
  }
  const QStringList files = parser.positionalArguments();
  if (parser.isSet(trace)) window.openTrace(parser.value(trace));
  else if (!files.isEmpty()) window.openPath(files.first());
  return QApplication::exec();
}
