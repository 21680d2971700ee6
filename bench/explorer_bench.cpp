// Explorer benchmark: how long a trace takes to open (load + pool replay index + every
// view built), then the frame time of scrubbing and of playback with every view updated
// and painted (offscreen), and the process's peak memory. Prints its figures.
//   explorer_bench FILE.trace [--frames 300]
#include <QApplication>
#include <QElapsedTimer>
#include <QSplitter>

#include <sys/resource.h>

#include <algorithm>
#include <cstdio>
#include <memory>
#include <vector>

#include "views/attention_view.h"
#include "views/book_view.h"
#include "views/decay_view.h"
#include "views/pool_view.h"
#include "views/timeline_bar.h"
#include "views/trace_document.h"
#include "views/trigger_view.h"

namespace {
double peak_rss_mb() {
  rusage u{};
  getrusage(RUSAGE_SELF, &u);
  return static_cast<double>(u.ru_maxrss) / 1024.0;
}
}  // namespace

int main(int argc, char** argv) {
  qputenv("QT_QPA_PLATFORM", qgetenv("QT_QPA_PLATFORM").isEmpty() ? QByteArray("offscreen") : qgetenv("QT_QPA_PLATFORM"));
  QApplication app(argc, argv);
  if (argc < 2) {
    std::fprintf(stderr, "usage: explorer_bench FILE.trace [--frames N]\n");
    return 2;
  }
  int frames = 300;
  std::string only;  // one view alone, to find which one costs the time
  for (int i = 2; i + 1 < argc; ++i) {
    if (std::string(argv[i]) == "--frames") frames = std::max(1, std::atoi(argv[i + 1]));
    if (std::string(argv[i]) == "--only") only = argv[i + 1];
  }
  auto want = [&](const char* name) { return only.empty() || only == name; };
  using namespace memmamba;
  views::TraceDocument doc;
  QSplitter window;
  if (want("book")) window.addWidget(new views::BookView(&doc));
  if (want("pool")) window.addWidget(new views::PoolView(&doc));
  if (want("triggers")) window.addWidget(new views::TriggerView(&doc));
  if (want("attention")) window.addWidget(new views::AttentionView(&doc));
  if (want("decay")) window.addWidget(new views::DecayView(&doc));
  views::TimelineBar timeline(&doc);
  window.resize(1600, 1000);
  window.show();

  QElapsedTimer clock;
  clock.start();
  std::shared_ptr<const Trace> trace;
  try {
    trace = std::make_shared<Trace>(Trace::load(argv[1]));
  } catch (const std::exception& e) {
    std::fprintf(stderr, "%s\n", e.what());
    return 3;
  }
  const double load_s = clock.nsecsElapsed() / 1e9;
  doc.setTrace(trace, QString::fromLocal8Bit(argv[1]));
  QApplication::processEvents();
  window.grab();
  const double open_s = clock.nsecsElapsed() / 1e9;
  std::printf("trace: %lld tokens, %zu layers, %zu notes, %zu events\n", static_cast<long long>(trace->length()),
              trace->layers.size(), trace->notes.size(), trace->events.size());
  std::printf("open: load %.2f s, views built and painted %.2f s total; peak RSS %.0f MB\n", load_s, open_s, peak_rss_mb());

  auto measure = [&](const char* what, auto&& step) {
    std::vector<double> ms;
    for (int i = 0; i < frames; ++i) {
      QElapsedTimer f;
      f.start();
      step(i);
      QApplication::processEvents();
      window.grab();  // paint every view, as a visible window would
      ms.push_back(f.nsecsElapsed() / 1e6);
    }
    std::sort(ms.begin(), ms.end());
    double mean = 0;
    for (double v : ms) mean += v;
    mean /= static_cast<double>(ms.size());
    std::printf("%-10s %d frames: mean %.1f ms (%.0f frames/s), median %.1f ms, 95th %.1f ms, worst %.1f ms\n", what,
                frames, mean, 1000.0 / mean, ms[ms.size() / 2], ms[ms.size() * 95 / 100], ms.back());
  };
  const int64_t T = trace->length();
  measure("scrubbing", [&](int i) { doc.setPosition((static_cast<int64_t>(i) * 7919 * 131) % T); });
  doc.setPosition(T / 3);
  measure("playback", [&](int) { timeline.advanceFrame(); });
  std::printf("peak RSS %.0f MB\n", peak_rss_mb());
  return 0;
}
