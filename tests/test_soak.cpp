// Load: 1,000 short runs back to back in one process, through the app's own worker (model
// and tokenizer kept loaded, as in the Explorer), each trace saved and loaded back and its
// pools replayed; every 50th run is cancelled part-way. Resident memory after a warm-up must
// not grow: a leak of a few tens of kilobytes per run would show as tens of megabytes.
// Prints RSS at the start, after warm-up and at the end.
#include <torch/torch.h>

#include <QSignalSpy>
#include <QTemporaryDir>
#include <QtTest/QtTest>

#include <unistd.h>

#include <cstdio>
#include <fstream>

#include "app/gui/run_worker.h"
#include "model/runtime.h"
#include "model/trace.h"

using namespace memmamba;

namespace {
double resident_mb() {
  long pages_total = 0, pages_resident = 0;
  std::ifstream("/proc/self/statm") >> pages_total >> pages_resident;
  return static_cast<double>(pages_resident) * static_cast<double>(::sysconf(_SC_PAGESIZE)) / (1024.0 * 1024.0);
}
}  // namespace

class TestSoak : public QObject {
  Q_OBJECT
 private Q_SLOTS:
  void thousandRunsDoNotGrowMemory() {
    const int runs = qEnvironmentVariableIntValue("MEMMAMBA_SOAK_RUNS") > 0 ? qEnvironmentVariableIntValue("MEMMAMBA_SOAK_RUNS") : 1000;
    const int warmup = std::min(100, runs / 5);
    configure_cpu_runtime();
    app::RunWorker worker;
    QTemporaryDir dir;
    const QString text_path = dir.filePath(QStringLiteral("text.txt"));
    const std::string trace_path = dir.filePath(QStringLiteral("run.trace")).toStdString();
    int finished_runs = 0, cancelled_runs = 0;
    int64_t cancel_at = 0;
    connect(&worker, &app::RunWorker::finished, this, [&](const app::RunResult& r) {
      r.trace->save(trace_path);
      const Trace back = Trace::load(trace_path);
      QCOMPARE(back.length(), r.trace->length());
      const PoolReplay replay(back);
      for (int32_t l = 0; l < static_cast<int32_t>(back.layers.size()); ++l)
        QCOMPARE(replay.pool_at(l, back.length()), back.pool_at(l, back.length()));
      ++finished_runs;
    });
    connect(&worker, &app::RunWorker::failed, this, [&](const QString& message, bool cancelled) {
      QVERIFY2(cancelled, qPrintable(message));
      ++cancelled_runs;
    });
    connect(&worker, &app::RunWorker::progress, this, [&](qint64 done, qint64, double, const QString&) {
      if (cancel_at > 0 && done >= cancel_at) worker.cancel();
    });
    const double start_mb = resident_mb();
    double warm_mb = start_mb;
    for (int i = 0; i < runs; ++i) {
      if (i == warmup) warm_mb = resident_mb();
      {
        std::ofstream f(text_path.toStdString(), std::ios::trunc);
        for (int s = 0; s < 4; ++s)
          f << "Run " << i << " sentence " << s << ": the traveller counted " << (i * 7919 + s * 104729) % 100000
            << " stars before the lamp went out. ";
      }
      app::RunRequest request;
      request.kind = app::RunRequest::Kind::Text;
      request.text_path = text_path;
      request.max_tokens = 160;
      cancel_at = i % 50 == 49 ? 1 + i % 7 : 0;
      worker.run(request);
    }
    const double end_mb = resident_mb();
    std::printf("soak: %d runs (%d finished, %d cancelled); RSS start %.1f MB, after %d warm-up runs %.1f MB, end %.1f MB "
                "(growth after warm-up %.1f MB)\n",
                runs, finished_runs, cancelled_runs, start_mb, warmup, warm_mb, end_mb, end_mb - warm_mb);
    QCOMPARE(finished_runs + cancelled_runs, runs);
    QVERIFY(cancelled_runs >= runs / 50 - 1);
    QVERIFY2(end_mb - warm_mb < 24.0, "resident memory grew over the soak");
  }
};

QTEST_GUILESS_MAIN(TestSoak)
#include "test_soak.moc"
