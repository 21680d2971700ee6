// The shared selection every view follows: the loaded trace (and comparison traces, e.g. the
// same text run by Mamba-only and as DeciMamba), the current token, the current layer, and the
// loaded passkey grid. Views read it and never own data; the app loads files and sets it.
#pragma once
#include <QObject>
#include <QString>

#include <memory>
#include <vector>

#include "model/eval/passkey_grid.h"
#include "model/json.h"
#include "model/trace.h"

namespace memmamba::views {

class TraceDocument : public QObject {
  Q_OBJECT
 public:
  explicit TraceDocument(QObject* parent = nullptr);

  void setTrace(std::shared_ptr<const Trace> trace, const QString& source);
  // Replaces every comparison by this one (none for a null trace).
  void setComparison(std::shared_ptr<const Trace> trace, const QString& label);
  // One more comparison beside the others (one of the same label is replaced): the three ways
  // of keeping the far past, notes, forgetting and dropped tokens, drawn together.
  void addComparison(std::shared_ptr<const Trace> trace, const QString& label);
  struct Comparison {
    QString label;
    std::shared_ptr<const Trace> trace;
  };
  const std::vector<Comparison>& comparisons() const { return comparisons_; }
  const Trace* trace() const { return trace_.get(); }
  std::shared_ptr<const Trace> sharedTrace() const { return trace_; }
  // The first comparison: the one the pool and attention views set beside the trace.
  const Trace* comparison() const { return comparisons_.empty() ? nullptr : comparisons_.front().trace.get(); }
  QString comparisonLabel() const { return comparisons_.empty() ? QString() : comparisons_.front().label; }
  // The first comparison that ran the trace's tokens as DeciMamba (tokens dropped between
  // layers), for the book view's and the raster's "kept" marks; null where there is none.
  const Comparison* decimatedComparison() const;
  QString source() const { return source_; }
  bool hasTrace() const { return trace_ && trace_->length() > 0; }

  int64_t length() const { return trace_ ? trace_->length() : 0; }
  int layers() const { return trace_ ? static_cast<int>(trace_->layers.size()) : 0; }
  int64_t slotCount() const { return trace_ ? trace_->pool_slots : 0; }
  int64_t position() const { return position_; }
  int layer() const { return layer_; }

  // Note index per slot of the current layer's pool as visible at `position` (-1 empty).
  std::vector<int64_t> poolAt(int layer, int64_t position) const;
  // The token whose bytes contain `byte` (the nearest before it), -1 without text.
  int64_t tokenAtByte(int64_t byte) const;
  // The token's text as it appears in the book (or its id when the trace has no text).
  QString tokenText(int64_t position) const;
  // Up to `radius` tokens of context around a position, the token itself in [brackets].
  QString context(int64_t position, int radius = 4) const;
  // The next (direction 1) or previous (-1) position after / before `from` where `layer` noted
  // a token; -1 where there is none.
  int64_t nextNoted(int layer, int64_t from, int direction) const;
  // Why `token` was or was not noted in `layer`: its importance against tau1, and for a noted
  // token its note, slot, priority and when it entered and left the pool (book view tooltips).
  QString whyNoted(int layer, int64_t token) const;
  // A note's source text (its first noted token in context).
  // A note's story for tooltips: its token and context, priority, slot, when it entered the
  // pool and when it left (evicted, dropped, or still there at the end).
  QString noteStory(int64_t note) const;
  // What a layer did over tokens [begin, end) for tooltips on binned figures: notes and reads
  // counted, and the span's most important token explained (whyNoted).
  QString spanSummary(int layer, int64_t begin, int64_t end) const;
  QString noteLabel(int64_t note) const;

  // The book's chapters as the trace recorded them (run_info "book"), by first token.
  struct ChapterMark {
    QString title;
    int64_t token;
  };
  const std::vector<ChapterMark>& chapters() const { return chapters_; }
  // Index of the chapter holding `position` (-1 before the first or without chapters).
  int chapterAt(int64_t position) const;

  // The passkey grid (`memmamba eval passkey` output) and the file it came from; the
  // results are null and the grid empty until one is set.
  void setGrid(Json results, eval::PasskeyGrid grid, const QString& source);
  const Json& gridResults() const { return grid_results_; }
  const eval::PasskeyGrid& grid() const { return grid_; }
  bool hasGrid() const { return !grid_.lengths.empty(); }
  QString gridSource() const { return grid_source_; }
  // A second grid beside the first (another model, or other settings, on the same kind of
  // cases): the Passkey panel draws both and lists both answers of a cell. Empty until set.
  void setComparisonGrid(Json results, eval::PasskeyGrid grid, const QString& source);
  void clearComparisonGrid();
  const Json& comparisonGridResults() const { return comparison_grid_results_; }
  const eval::PasskeyGrid& comparisonGrid() const { return comparison_grid_; }
  bool hasComparisonGrid() const { return !comparison_grid_.lengths.empty(); }
  QString comparisonGridSource() const { return comparison_grid_source_; }

 public Q_SLOTS:
  void setPosition(qint64 position);
  void setLayer(int layer);

 Q_SIGNALS:
  void traceChanged();
  void comparisonChanged();
  void positionChanged(qint64 position);
  void layerChanged(int layer);
  void gridChanged();

 private:
  std::shared_ptr<const Trace> trace_;
  std::vector<Comparison> comparisons_;
  int decimated_comparison_ = -1;  // index in comparisons_ (decimatedComparison), -1 none
  void findDecimatedComparison();
  std::vector<ChapterMark> chapters_;
  std::unique_ptr<PoolReplay> replay_;
  Json grid_results_, comparison_grid_results_;
  eval::PasskeyGrid grid_, comparison_grid_;
  QString comparison_grid_source_;
  QString source_, grid_source_;
  int64_t position_ = 0;
  int layer_ = 0;
};

}  // namespace memmamba::views
