// MemMamba Explorer: opens a text (runs the model on it) or a saved trace.
#include <QApplication>
#include <QCommandLineParser>
#include <QFileInfo>
#include <QSize>
#include <QTimer>

#include <cmath>
#include <cstdio>
#include <memory>

#include "app/gui/main_window.h"
#include "model/eval/passkey_grid.h"
#include "model/file_io.h"
#include "model/json.h"
#include "model/log.h"
#include "model/runtime.h"
#include "views/retrieval_panel.h"
#include "views/trace_document.h"

int main(int argc, char** argv) {
  memmamba::restart_with_fitting_blas_kernels(argv);
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
  const QCommandLineOption export_figures(QStringLiteral("export-figures"),
                                          QStringLiteral("After loading, write every figure with something drawn as PNG, SVG, PDF and CSV into DIR and quit (no window is shown)."),
                                          QStringLiteral("DIR"));
  const QCommandLineOption figure_size(QStringLiteral("figure-size"),
                                       QStringLiteral("Size of exported figures: column (252 x 180 pt), two-column (516 x 260 pt), slide (960 x 540 pt) or WIDTHxHEIGHT in points (default: two-column). PNGs are drawn at 300 dpi."),
                                       QStringLiteral("SIZE"));
  const QCommandLineOption csv_full(QStringLiteral("csv-full"),
                                    QStringLiteral("With --export-figures: CSVs hold every value behind a figure (per token), not the points it draws."));
  const QCommandLineOption encoding(QStringLiteral("encoding"),
                                    QStringLiteral("How to read a text file: auto (default: a BOM, else UTF-8, else CP-1252), utf-8, utf-16le, utf-16be, latin-1 or cp1252."),
                                    QStringLiteral("E"));
  const QCommandLineOption keep_boilerplate(QStringLiteral("keep-boilerplate"),
                                            QStringLiteral("Keep a Project Gutenberg file's licence header and footer."));
  const QCommandLineOption edit(QStringLiteral("edit"),
                                QStringLiteral("Memory edits, a JSON list as `memmamba run --edit` reads (docs/interventions.md): the text runs as it is, then with the edits, compared with the first run."),
                                QStringLiteral("FILE"));
  const QCommandLineOption grid(QStringLiteral("grid"),
                                QStringLiteral("Open a passkey grid (`memmamba eval passkey` JSON) in the Passkey panel; click a cell to run its case."),
                                QStringLiteral("FILE"));
  const QCommandLineOption grid_case(QStringLiteral("case"),
                                     QStringLiteral("With --grid: run the case of this cell (LENGTH,DEPTH as in the grid, e.g. 65536,0.5 or 64k,0.5) as the grid ran it, and open it at its answer."),
                                     QStringLiteral("LENGTH,DEPTH"));
  const QCommandLineOption compare_grid(QStringLiteral("compare-grid"),
                                        QStringLiteral("With --grid: draw this second grid (another model on the same cases) beside it; a clicked cell lists both answers."),
                                        QStringLiteral("FILE"));
  const QCommandLineOption compare(QStringLiteral("compare"),
                                   QStringLiteral("After the text, trace or --case has run, run it the other ways beside it: mamba (Mamba-only), decimamba (DeciMamba) or both (the three ways side by side). With --screenshots or --export-figures they wait for these runs."),
                                   QStringLiteral("WHICH"));
  const QCommandLineOption at_layer(QStringLiteral("layer"), QStringLiteral("Open at this layer (0 = first)."), QStringLiteral("L"));
  const QCommandLineOption at_token(QStringLiteral("token"), QStringLiteral("Open at this token position (0 = first)."), QStringLiteral("T"));
  parser.addOptions({trace, checkpoint, tokenizer, device, screenshots, export_figures, figure_size, csv_full, encoding,
                     keep_boilerplate, edit, grid, grid_case, compare_grid, compare, at_layer, at_token});

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
  // Figure sizes in points, as a paper or a slide measures them.
  QSize figure_points(516, 260);
  QList<bool> comparisons;  // --compare: per comparison run, whether it is DeciMamba
  auto check_flags = [&]() -> int {
    if (parser.isSet(figure_size)) {
      const QString v = parser.value(figure_size).toLower();
      if (v == QLatin1String("column")) figure_points = QSize(252, 180);
      else if (v == QLatin1String("two-column")) figure_points = QSize(516, 260);
      else if (v == QLatin1String("slide")) figure_points = QSize(960, 540);
      else {
        const QStringList wh = v.split(QLatin1Char('x'));
        bool ok_w = false, ok_h = false;
        const int w = wh.size() == 2 ? wh[0].toInt(&ok_w) : 0, h = wh.size() == 2 ? wh[1].toInt(&ok_h) : 0;
        if (!ok_w || !ok_h || w < 72 || h < 72 || w > 5000 || h > 5000) {
          std::fprintf(stderr, "--figure-size takes column, two-column, slide or WIDTHxHEIGHT in points (72 to 5000), not \"%s\"\n",
                       qPrintable(parser.value(figure_size)));
          return 2;
        }
        figure_points = QSize(w, h);
      }
    }
    if (parser.isSet(compare)) {
      const QString which = parser.value(compare).toLower();
      if (which == QLatin1String("mamba")) comparisons = {false};
      else if (which == QLatin1String("decimamba")) comparisons = {true};
      else if (which == QLatin1String("both")) comparisons = {false, true};
      else {
        std::fprintf(stderr, "--compare takes mamba, decimamba or both, not \"%s\"\n", qPrintable(parser.value(compare)));
        return 2;
      }
      if (parser.isSet(edit)) {
        std::fprintf(stderr, "--compare and --edit both set what the run is compared with: give one\n");
        return 2;
      }
    }
    for (const QCommandLineOption* o : {&at_layer, &at_token}) {
      if (!parser.isSet(*o)) continue;
      bool ok = false;
      const qlonglong v = parser.value(*o).toLongLong(&ok);
      if (!ok || v < 0) {
        std::fprintf(stderr, "--%s takes a whole number from 0, not \"%s\"\n", qPrintable(o->names().first()),
                     qPrintable(parser.value(*o)));
        return 2;
      }
    }
    if (parser.isSet(csv_full) && !parser.isSet(export_figures)) {
      std::fprintf(stderr, "--csv-full needs --export-figures (in the window, the export dialog's CSV box does the same)\n");
      return 2;
    }
    if (parser.isSet(export_figures) && !parser.isSet(trace) && parser.positionalArguments().isEmpty()) {
      std::fprintf(stderr, "--export-figures needs a text or a --trace to draw\n");
      return 2;
    }
    const QString dev = parser.value(device);
    if (const std::string error = dev.isEmpty() ? std::string() : memmamba::device_choice_error(dev.toStdString());
        !error.empty()) {
      std::fprintf(stderr, "%s\n", error.c_str());
      return 2;
    }
    static const QStringList kEncodings = {QStringLiteral("auto"),     QStringLiteral("utf-8"),   QStringLiteral("utf-16le"),
                                           QStringLiteral("utf-16be"), QStringLiteral("latin-1"), QStringLiteral("cp1252")};
    if (parser.isSet(encoding) && !kEncodings.contains(parser.value(encoding).toLower())) {
      std::fprintf(stderr, "--encoding takes %s, not \"%s\"\n", qPrintable(kEncodings.join(QStringLiteral(", "))),
                   qPrintable(parser.value(encoding)));
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
  // The edit file is read now: a bad one is refused before any window or run.
  memmamba::Json edit_list;
  if (parser.isSet(edit)) {
    try {
      edit_list = memmamba::Json::parse(memmamba::read_file(parser.value(edit).toStdString(), 16 << 20));
    } catch (const std::exception& e) {
      std::fprintf(stderr, "--edit %s: %s\n", qPrintable(parser.value(edit)), e.what());
      return 3;
    }
    if (!edit_list.is_array()) {
      std::fprintf(stderr, "--edit %s: an edit file holds a JSON list of edits\n", qPrintable(parser.value(edit)));
      return 3;
    }
    if (parser.isSet(trace) || parser.positionalArguments().isEmpty()) {
      std::fprintf(stderr, "--edit needs a text to run (a trace is not re-run from the command line)\n");
      return 2;
    }
  }

  // A grid is read now too, so a bad one is refused without a display; the window takes it
  // as read.
  auto read_grid = [&parser](const QCommandLineOption& option, memmamba::Json& results, memmamba::eval::PasskeyGrid& cells) {
    try {
      cells = memmamba::eval::load_passkey_grid(parser.value(option).toStdString(), &results);
      return true;
    } catch (const std::exception& e) {
      std::fprintf(stderr, "--%s %s: %s\n", qPrintable(option.names().first()), qPrintable(parser.value(option)), e.what());
      return false;
    }
  };
  memmamba::Json grid_results;
  memmamba::eval::PasskeyGrid grid_cells;
  if (parser.isSet(grid) && !read_grid(grid, grid_results, grid_cells)) return 3;

  memmamba::Json compare_results;
  memmamba::eval::PasskeyGrid compare_cells;
  if (parser.isSet(compare_grid)) {
    if (!parser.isSet(grid)) {
      std::fprintf(stderr, "--compare-grid needs --grid FILE (the grid to draw it beside)\n");
      return 2;
    }
    if (!read_grid(compare_grid, compare_results, compare_cells)) return 3;
  }
  // --case: a cell of the grid, found now so that a wrong one is said before any window opens.
  int case_length = -1, case_depth = -1;
  if (parser.isSet(grid_case)) {
    if (!parser.isSet(grid)) {
      std::fprintf(stderr, "--case needs --grid FILE (the grid whose cell to run)\n");
      return 2;
    }
    if (parser.isSet(trace) || !parser.positionalArguments().isEmpty()) {
      std::fprintf(stderr, "--case runs a passkey case instead of a book: drop the book or --trace\n");
      return 2;
    }
    if (grid_cells.documents) {
      std::fprintf(stderr, "--case runs a passkey or facts case; the cases of a docs result are listed in the Passkey "
                           "panel, not run\n");
      return 2;
    }
    const QStringList parts = parser.value(grid_case).split(QLatin1Char(','));
    bool ok_length = false, ok_depth = false;
    double length = 0, depth = 0;
    if (parts.size() == 2) {
      QString l = parts[0].trimmed().toLower();
      double scale = 1;
      if (l.endsWith(QLatin1Char('k'))) scale = 1024;
      else if (l.endsWith(QLatin1Char('m'))) scale = 1024 * 1024;
      if (scale > 1) l.chop(1);
      length = l.toDouble(&ok_length) * scale;
      depth = parts[1].trimmed().toDouble(&ok_depth);
    }
    if (ok_length) case_length = grid_cells.length_index(length);
    if (ok_depth) case_depth = grid_cells.depth_index(depth);
    if (case_length < 0 || case_depth < 0) {
      QStringList lengths, depths;
      for (int64_t v : grid_cells.lengths) lengths << QString::number(v);
      for (double v : grid_cells.depths) depths << QString::number(v);
      std::fprintf(stderr, "--case %s: not a cell of the grid (lengths %s; depths %s)\n", qPrintable(parser.value(grid_case)),
                   qPrintable(lengths.join(QLatin1Char(' '))), qPrintable(depths.join(QLatin1Char(' '))));
      return 2;
    }
  }

  // Figures without clicking: no display is needed for them.
  if (parsed && parser.isSet(export_figures) && qEnvironmentVariableIsEmpty("QT_QPA_PLATFORM"))
    qputenv("QT_QPA_PLATFORM", "offscreen");
  QApplication app(argc, argv);
  QApplication::setWindowIcon(QIcon(QStringLiteral(":/memmamba-explorer.svg")));
  if (!parsed) {
    parser.process(app);  // reports what is still unknown once Qt has taken its own options
    if (const int code = check_flags()) return code;
  }

  memmamba::configure_cpu_runtime();
  const QString dev = parser.value(device);
  memmamba::app::MainWindow window;
  if (parser.isSet(checkpoint) || parser.isSet(tokenizer) || !dev.isEmpty())
    window.setModelChoice(parser.value(checkpoint), parser.value(tokenizer),
                          dev.isEmpty() ? memmamba::cuda_available() : dev == QLatin1String("cuda"));
  if (parser.isSet(encoding) || parser.isSet(keep_boilerplate)) {
    memmamba::BookOptions book;
    if (parser.isSet(encoding)) book.encoding = parser.value(encoding).toLower().toStdString();
    book.keep_boilerplate = parser.isSet(keep_boilerplate);
    window.setBookOptions(book);
  }
  // With edits, the text runs as it is first; its trace loaded, the edited run starts, and
  // figures or screenshots wait for that one.
  auto loads_left = std::make_shared<int>(parser.isSet(edit) ? 2 : 1);
  const bool with_edits = parser.isSet(edit);
  QObject::connect(&window, &memmamba::app::MainWindow::traceLoaded, &window, [&window, edit_list, loads_left, with_edits] {
    --*loads_left;
    if (with_edits && *loads_left == 1) QTimer::singleShot(0, &window, [&window, edit_list] { window.setEdits(edit_list); });
  });
  // --layer and --token place the views once the (last) trace is in; beyond the trace they
  // stop at its last layer and token, as the timeline does.
  if (parser.isSet(at_layer) || parser.isSet(at_token))
    QObject::connect(&window, &memmamba::app::MainWindow::traceLoaded, &window,
                     [&window, loads_left, layer = parser.isSet(at_layer) ? parser.value(at_layer).toInt() : -1,
                      token = parser.isSet(at_token) ? parser.value(at_token).toLongLong() : -1] {
      if (*loads_left != 0) return;
      if (layer >= 0) window.document()->setLayer(layer);
      if (token >= 0) window.document()->setPosition(token);
    });
  // With --compare the run's trace starts the comparisons, and "ready" (figures, screenshots)
  // is when the last of them has landed.
  if (!comparisons.isEmpty())
    QObject::connect(&window, &memmamba::app::MainWindow::traceLoaded, &window, [&window, loads_left, comparisons] {
      if (*loads_left == 0) QTimer::singleShot(0, &window, [&window, comparisons] { window.runComparisons(comparisons); });
    });
  const auto ready_signal = comparisons.isEmpty() ? &memmamba::app::MainWindow::traceLoaded
                                                  : &memmamba::app::MainWindow::comparisonsFinished;
  // A grid alone (no cell to run, no book, no trace) loads nothing: figures and screenshots are
  // taken as soon as the window is up, not on a load that never comes.
  const QStringList files = parser.positionalArguments();
  const bool loads_nothing = !parser.isSet(trace) && files.isEmpty() && case_length < 0;
  if (loads_nothing) *loads_left = 0;
  const QString figures_dir = parser.value(export_figures);
  if (!figures_dir.isEmpty()) {
    window.setBatchMode(true);
    const auto csv_detail = parser.isSet(csv_full) ? memmamba::views::CsvDetail::Full : memmamba::views::CsvDetail::Figure;
    auto export_all = [&window, figures_dir, figure_points, loads_left, csv_detail] {
      if (*loads_left > 0) return;
      // 300 dpi for the PNGs: points are 1/72 inch.
      const QString error = window.exportAll(figures_dir, figure_points.width(), figure_points.height(), 300.0 / 72.0, {},
                                             csv_detail);
      if (!error.isEmpty()) std::fprintf(stderr, "%s\n", qPrintable(error));
      std::printf("figures written to %s\n", qPrintable(figures_dir));
      QApplication::exit(error.isEmpty() ? 0 : 1);
    };
    QObject::connect(&window, ready_signal, &window, export_all);
    if (loads_nothing) QTimer::singleShot(0, &window, export_all);
    QObject::connect(&window, &memmamba::app::MainWindow::runFailed, &window, [] { QApplication::exit(1); });
  } else {
    window.show();
  }
  const QString shots = parser.value(screenshots);
  if (!shots.isEmpty()) {
    window.setBatchMode(true);
    auto finish = [&window, shots, loads_left] {
      if (*loads_left > 0) return;
      QTimer::singleShot(300, &window, [&window, shots] {
        window.saveScreenshots(shots);
        QApplication::quit();
      });
    };
    QObject::connect(&window, ready_signal, &window, finish);
    QObject::connect(&window, &memmamba::app::MainWindow::runFailed, &window, [] { QApplication::exit(1); });
    if (loads_nothing) QTimer::singleShot(0, &window, finish);
  }
  if (parser.isSet(grid)) {
    window.document()->setGrid(std::move(grid_results), std::move(grid_cells), parser.value(grid));
    if (parser.isSet(compare_grid))
      window.document()->setComparisonGrid(std::move(compare_results), std::move(compare_cells), parser.value(compare_grid));
    window.showGrid();
    if (case_length >= 0)
      QTimer::singleShot(0, &window, [&window, case_length, case_depth] { window.retrievalPanel()->selectCell(case_length, case_depth); });
  }
  if (parser.isSet(trace)) window.openTrace(parser.value(trace));
  else if (!files.isEmpty()) window.openPath(files.first());
  return QApplication::exec();
}
