// The Explorer's main window: the book in the centre, the views in dock panels, the
// timeline at the bottom; runs go to a worker thread with progress and Cancel.
#pragma once
#include <QMainWindow>
#include <QStringList>
#include <QThread>

#include <functional>

#include <memory>
#include <optional>

#include "app/gui/run_worker.h"
#include "views/plot_panel.h"

class QAction;
class QLabel;
class QProgressBar;
class QPushButton;
class QPlainTextEdit;
class QListWidget;
class QMenu;
class QTextBrowser;

namespace memmamba::views {
class TraceDocument;
class BookView;
class TimelineBar;
class PoolView;
class TriggerView;
class AttentionView;
class DecayView;
class LossDifferenceView;
class RetrievalPanel;
class NotedListView;
}  // namespace memmamba::views

namespace memmamba::app {

class MainWindow : public QMainWindow {
  Q_OBJECT
 public:
  explicit MainWindow(QWidget* parent = nullptr);
  ~MainWindow() override;

  void setModelChoice(const QString& checkpoint, const QString& tokenizer, bool cuda);
  // Opens a .trace file (loaded off the GUI thread) or runs the model on a text file.
  void openPath(const QString& path);
  void openTrace(const QString& path);
  void runText(const QString& path);
  void runPasskey(qint64 length, double depth, const QString& key, quint64 seed);
  // A case of the loaded `eval passkey` grid, run as the grid ran it (applyGridRun).
  void runGridCase(qint64 length, double depth, const QString& key, quint64 seed);
  // The command line of another Explorer that opens the loaded grid's cell (length, depth) with
  // this window's model, tokenizer and device.
  QStringList caseWindowArguments(qint64 length, double depth) const;
  // Loads a `memmamba eval passkey` result into the document; returns "" or why it is not a grid.
  QString loadGrid(const QString& path);
  // Loads a second grid to draw beside the first (another model on the same cases).
  QString loadComparisonGrid(const QString& path);
  // Brings the Passkey panel (and its grid) to the front.
  void showGrid();
  void cancelRun();
  bool running() const { return running_; }
  QString checkpointChoice() const { return checkpoint_; }
  QString tokenizerChoice() const { return tokenizer_; }
  // Every figure of every view, for export ("panel/figure").
  QStringList figureNames() const;
  // A .csv path writes the figure's numbers as drawn, or every value behind it (`csv_detail`).
  QString exportFigure(const QString& name, const QString& path, int width, int height, double scale,
                       views::CsvDetail csv_detail = views::CsvDetail::Figure);
  // Writes PNG, SVG, PDF and CSV of every figure into `directory`; returns errors ("" = none).
  // `progress(done, total)` is asked before each file; returning false stops there.
  QString exportAll(const QString& directory, int width, int height, double scale,
                    const std::function<bool(int, int)>& progress = {},
                    views::CsvDetail csv_detail = views::CsvDetail::Figure);
  void saveScreenshots(const QString& directory);
  views::TraceDocument* document() const { return document_; }
  views::RetrievalPanel* retrievalPanel() const { return retrieval_; }
  views::NotedListView* notedList() const { return noted_; }
  // Every menu action with a shortcut, as an HTML table (Help > Keyboard shortcuts).
  QString shortcutsHelp() const;
  views::TimelineBar* timeline() const { return timeline_; }
  void showTour(bool show);
  // Batch use (screenshots): errors go to stderr instead of dialogs nobody could close.
  void setBatchMode(bool batch) { batch_ = batch; }
  void setDarkPalette(bool dark);
  // Runs the same text or passkey case the other ways, one after another, as the comparisons
  // every view draws beside the run: per entry Mamba-only (false) or DeciMamba (true), on the
  // bundled Mamba-small twin where Run > twin is on. comparisonsFinished() follows the last.
  void runComparisons(const QList<bool>& decimate_each);
  // How texts opened from now on are read (encoding, Gutenberg boilerplate); a re-run of a
  // trace's book reads it as the trace did.
  void setBookOptions(const BookOptions& options) { book_options_ = options; }
  // Memory edits (interventions): each change re-runs the last run with the whole list; the
  // run before the first edit stays as the comparison.
  void addEdit(const Json& edit);
  // Replaces the whole list (a JSON list, as `memmamba run --edit` reads) and re-runs once.
  void setEdits(const Json& edits);
  void removeEdit(int index);
  void clearEdits();
  const Json& edits() const { return edits_; }

 Q_SIGNALS:
  void traceLoaded();
  void comparisonsFinished();
  void runFailed(const QString& message);
  void runRequested(const memmamba::app::RunRequest& request);

 protected:
  void closeEvent(QCloseEvent* event) override;
  void dragEnterEvent(QDragEnterEvent* event) override;
  void dropEvent(QDropEvent* event) override;

 private:
  // Reads a grid file into the document, as its grid or as the one beside it; "" or why not.
  QString readGridInto(const QString& path, bool comparison);
  // Whether a grid's case runs in this window. With a book loaded it asks (or takes the
  // remembered answer, setting grid/case_window): a new window for the case (then false), here
  // (the book's trace is replaced), or not at all.
  bool caseGoesHere(qint64 length, double depth);
  // The text to re-run: the current one, or (a trace's book that moved) the one the user
  // locates; otherwise says `message` and returns false.
  bool ensureCurrentText(const QString& title, const QString& message);
  void buildMenus();
  void startRun(RunRequest request);
  RunRequest textRequest(const QString& path) const;  // a Text run of `path`, labelled by its name
  void onRunFinished(const RunResult& result);
  void onRunFailed(const QString& message, bool cancelled);
  void addRecent(const QString& path);
  void rebuildRecentMenu();
  void exportDialog();
  void exportAllDialog();
  void saveTraceAs();
  void chooseModel();
  // A comparison run's result: set beside the run (the first of a batch replaces the earlier
  // ones), its passkey answer shown; then the next queued comparison starts.
  void acceptComparison(const RunResult& result);
  void startNextComparison();
  void appendLog(const QString& line);
  void rerunWithEdits();
  void refreshEditList();
  void reportEditEffect(const RunResult& result);
  void complain(const QString& title, const QString& message);
  std::vector<std::pair<QString, views::PlotPanel*>> panels() const;

  views::TraceDocument* document_;
  views::BookView* book_;
  views::TimelineBar* timeline_;
  views::PoolView* pool_;
  views::TriggerView* triggers_;
  views::AttentionView* attention_;
  views::DecayView* decay_;
  views::LossDifferenceView* loss_difference_;
  views::RetrievalPanel* retrieval_;
  views::NotedListView* noted_;
  QAction* twin_action_ = nullptr;
  QPlainTextEdit* log_;
  QTextBrowser* tour_;
  QDockWidget* tour_dock_ = nullptr;
  QDockWidget* loss_dock_ = nullptr;
  QLabel* device_label_;
  QLabel* speed_label_;
  QProgressBar* progress_;
  QPushButton* cancel_;
  QMenu* recent_menu_ = nullptr;
  QThread worker_thread_;
  RunWorker* worker_;
  bool running_ = false;
  QString checkpoint_, tokenizer_, current_text_;
  QString missing_book_;  // the book a loaded trace names but that was not found
  bool cuda_ = false;
  bool cpu_bf16_ = false;  // CPU runs with bf16 matrix products (Run > Model)
  QString comparison_pending_;  // the label of a comparison run under way ("" none)
  struct PendingComparison {
    RunRequest request;
    QString label;
  };
  std::vector<PendingComparison> comparison_queue_;  // comparisons still to start, in order
  bool comparison_replaces_ = true;                  // the one under way replaces the earlier ones
  bool batch_ = false;
  Json edits_ = Json::array();
  BookOptions book_options_;
  QListWidget* edit_list_ = nullptr;
  std::optional<RunRequest> last_request_;   // the last run's request, for re-runs with edits
  std::shared_ptr<const Trace> unedited_;    // the trace before the first edit
  QString unedited_answer_;                  // its passkey answer, when it was a passkey case
  QString last_answer_;                      // the last passkey run's answer
};

}  // namespace memmamba::app
