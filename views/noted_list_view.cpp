#include "views/noted_list_view.h"

#include <QFileDialog>
#include <QHeaderView>
#include <QLabel>
#include <QMessageBox>
#include <QPushButton>
#include <QTableWidget>
#include <QVBoxLayout>

#include <algorithm>

#include "views/plot_export.h"
#include "views/trace_document.h"

namespace memmamba::views {

NotedListView::NotedListView(TraceDocument* document, QWidget* parent) : QWidget(parent), document_(document) {
  auto* layout = new QVBoxLayout(this);
  caption_ = new QLabel(this);
  caption_->setWordWrap(true);
  layout->addWidget(caption_);
  table_ = new QTableWidget(0, 4, this);
  table_->setObjectName(QStringLiteral("most-noted"));
  table_->setHorizontalHeaderLabels({tr("noted text"), tr("times"), tr("share"), tr("first at")});
  table_->horizontalHeader()->setSectionResizeMode(0, QHeaderView::Stretch);
  table_->verticalHeader()->setVisible(false);
  table_->setEditTriggers(QAbstractItemView::NoEditTriggers);
  table_->setSelectionBehavior(QAbstractItemView::SelectRows);
  table_->setToolTip(tr("Double-click: go to the next place this text was noted in this layer"));
  layout->addWidget(table_, 1);
  auto* save = new QPushButton(tr("Save the layer's list as CSV..."), this);
  layout->addWidget(save);
  connect(save, &QPushButton::clicked, this, [this] {
    const QString path = QFileDialog::getSaveFileName(this, tr("Save the most-noted list"),
                                                      QStringLiteral("noted-layer%1.csv").arg(document_->layer()),
                                                      tr("CSV data (*.csv)"));
    if (path.isEmpty()) return;
    const QString error = writeTextAtomically(path, csv());
    if (!error.isEmpty()) QMessageBox::warning(this, tr("Save the most-noted list"), error);
  });
  connect(table_, &QTableWidget::cellDoubleClicked, this, [this](int row, int) { stepToNext(row); });
  connect(document_, &TraceDocument::traceChanged, this, &NotedListView::rebuild);
  connect(document_, &TraceDocument::layerChanged, this, &NotedListView::rebuild);
  rebuild();
}

int NotedListView::rows() const { return table_->rowCount(); }
QString NotedListView::caption() const { return caption_->text(); }

void NotedListView::rebuild() {
  table_->setRowCount(0);
  shown_.clear();
  const Trace* trace = document_->trace();
  if (!document_->hasTrace()) {
    caption_->setText(tr("Open a book or a trace to see what each layer notes most."));
    return;
  }
  const int layer = document_->layer();
  const int64_t notes = noted_count(*trace, layer);
  shown_ = most_noted_strings(*trace, layer, kShown);
  const NoteRarity rarity = note_rarity(*trace, layer);
  caption_->setText(notes == 0 ? tr("Layer %1 noted nothing in this run.").arg(layer)
                               : tr("Layer %1: %L2 notes (%3% of %L4 tokens); the %5 texts it noted most. A noted token "
                                    "occurs a median %6 times in this text, any token %7.")
                                     .arg(layer)
                                     .arg(notes)
                                     .arg(100.0 * static_cast<double>(notes) / static_cast<double>(document_->length()), 0, 'g', 3)
                                     .arg(document_->length())
                                     .arg(shown_.size())
                                     .arg(rarity.noted_median)
                                     .arg(rarity.text_median));
  table_->setRowCount(static_cast<int>(shown_.size()));
  for (int r = 0; r < static_cast<int>(shown_.size()); ++r) {
    const NotedString& n = shown_[static_cast<size_t>(r)];
    auto* text = new QTableWidgetItem(QString::fromStdString(n.text));
    auto* count = new QTableWidgetItem;
    count->setData(Qt::DisplayRole, static_cast<qlonglong>(n.count));
    auto* share = new QTableWidgetItem(QStringLiteral("%1%").arg(100.0 * static_cast<double>(n.count) / static_cast<double>(notes), 0, 'f', 1));
    auto* first = new QTableWidgetItem;
    first->setData(Qt::DisplayRole, static_cast<qlonglong>(n.first));
    table_->setItem(r, 0, text);
    table_->setItem(r, 1, count);
    table_->setItem(r, 2, share);
    table_->setItem(r, 3, first);
  }
}

void NotedListView::stepToNext(int row) {
  if (row < 0 || row >= static_cast<int>(shown_.size())) return;
  const std::vector<int64_t>& at = shown_[static_cast<size_t>(row)].positions;
  if (at.empty()) return;
  const auto next = std::upper_bound(at.begin(), at.end(), document_->position());
  document_->setPosition(next == at.end() ? at.front() : *next);
}

QString NotedListView::csv() const {
  QString out = QStringLiteral("layer,text,count,first\n");
  if (!document_->hasTrace()) return out;
  const int layer = document_->layer();
  for (const NotedString& n : most_noted_strings(*document_->trace(), layer, 0)) {
    QString text = QString::fromStdString(n.text);
    text.replace(QLatin1Char('"'), QStringLiteral("\"\""));
    out += QStringLiteral("%1,\"%2\",%3,%4\n").arg(layer).arg(text).arg(n.count).arg(n.first);
  }
  return out;
}

}  // namespace memmamba::views
