// MemMamba Explorer: opens a text (runs the model on it) or a saved trace.
#include <QApplication>
#include <QCommandLineParser>
#include <QFileInfo>
#include <QTimer>

#include <cstdio>

#include "app/gui/main_window.h"
#include "model/log.h"

int main(int argc, char** argv) {
  QApplication app(argc, argv);
  QApplication::setApplicationName(QStringLiteral("MemMamba Explorer"));
  QApplication::setOrganizationName(QStringLiteral("MemMamba"));
  QApplication::setApplicationVersion(QStringLiteral(MEMMAMBA_VERSION));
  QApplication::setWindowIcon(QIcon(QStringLiteral(":/memmamba-explorer.svg")));
  QCommandLineParser parser;
  parser.setApplicationDescription(QStringLiteral("Explore the memory of the MemMamba model on long texts."));
  parser.addHelpOption();
  parser.addVersionOption();
  parser.addPositionalArgument(QStringLiteral("file"), QStringLiteral("A text to run the model on, or a .trace to open."));
  const QCommandLineOption trace({QStringLiteral("t"), QStringLiteral("trace")}, QStringLiteral("Open a saved trace."), QStringLiteral("FILE"));
  const QCommandLineOption checkpoint(QStringLiteral("checkpoint"), QStringLiteral("Model checkpoint (default: bundled)."), QStringLiteral("FILE"));
  const QCommandLineOption tokenizer(QStringLiteral("tokenizer"), QStringLiteral("SentencePiece model (default: bundled)."), QStringLiteral("FILE"));
  const QCommandLineOption device(QStringLiteral("device"), QStringLiteral("cpu or cuda (default: cuda when present)."), QStringLiteral("DEVICE"));
  const QCommandLineOption screenshots(QStringLiteral("screenshots"), QStringLiteral("After loading, save screenshots of every view into DIR and quit."), QStringLiteral("DIR"));
  parser.addOptions({trace, checkpoint, tokenizer, device, screenshots});
  parser.process(app);

  memmamba::app::configureRuntime();
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
