#include "views/retrieval_panel.h"
#include "views/plot.h"

#include "model/eval/documents.h"
#include "model/eval/retrieval_case.h"

#include <QComboBox>
#include <QDoubleSpinBox>
#include <QFile>
#include <QFileInfo>
#include <QFormLayout>
#include <QHBoxLayout>
#include <QLabel>
#include <QPushButton>
#include <QSpinBox>
#include <QSplitter>
#include <QTextBrowser>
#include <QVBoxLayout>
#include <qcustomplot.h>

#include <algorithm>
#include <cmath>
#include <map>

#include "views/trace_document.h"

namespace memmamba::views {

RetrievalPanel::RetrievalPanel(TraceDocument* document, QWidget* parent) : PlotPanel(document, parent) {
  auto* layout = new QVBoxLayout(this);
  layout->setContentsMargins(0, 0, 0, 0);
  auto* form = new QFormLayout;
  length_ = new QSpinBox(this);
  length_->setRange(64, 1 << 24);
  length_->setSingleStep(1024);
  length_->setValue(4096);
  length_->setSuffix(tr(" tokens"));
  depth_ = new QDoubleSpinBox(this);
  depth_->setRange(0, 1);
  depth_->setSingleStep(0.1);
  depth_->setValue(0.5);
  key_ = new QSpinBox(this);
  key_->setRange(0, 99999);
  key_->setSpecialValueText(tr("random"));
  key_->setToolTip(tr("Five-digit key (10000-99999); 'random' draws one from the seed"));
  seed_ = new QSpinBox(this);
  seed_->setRange(0, 1000000);
  form->addRow(tr("Length"), length_);
  form->addRow(tr("Depth"), depth_);
  form->addRow(tr("Key"), key_);
  form->addRow(tr("Seed"), seed_);
  auto* buttons = new QHBoxLayout;
  auto* run = new QPushButton(tr("Run passkey case"), this);
  auto* load = new QPushButton(tr("Load evaluation grid..."), this);
  auto* compare = new QPushButton(tr("Compare with grid..."), this);
  compare->setToolTip(tr("Draw a second grid (another model on the same cases) beside this one; a clicked cell lists "
                         "both models' answers"));
  measure_ = new QComboBox(this);
  measure_->addItem(tr("Exact key"));
  measure_->addItem(tr("Key digits in place"));
  measure_->setToolTip(tr("Exact match of the key, or partial credit: the share of its digits the answer has in place"));
  buttons->addWidget(run);
  buttons->addWidget(load);
  buttons->addWidget(compare);
  buttons->addWidget(measure_);
  layout->addLayout(form);
  layout->addLayout(buttons);
  grid_label_ = new QLabel(tr("No grid loaded: run `memmamba eval passkey` and load its JSON."), this);
  grid_label_->setWordWrap(true);
  layout->addWidget(grid_label_);
  auto* split = new QSplitter(Qt::Vertical, this);
  auto* grids = new QSplitter(Qt::Horizontal, this);
  grid_ = new Plot(this);
  grid_->setObjectName(QStringLiteral("passkey-grid"));
  grid_->setMinimumHeight(160);
  comparison_grid_ = new Plot(this);
  comparison_grid_->setObjectName(QStringLiteral("passkey-grid-comparison"));
  comparison_grid_->setMinimumHeight(160);
  comparison_grid_->setVisible(false);
  grid_->setVisible(false);  // until a grid is loaded (drawGrid)
  grids->addWidget(grid_);
  grids->addWidget(comparison_grid_);
  details_ = new QTextBrowser(this);
  split->addWidget(grids);
  split->addWidget(details_);
  layout->addWidget(split, 1);
  connect(run, &QPushButton::clicked, this, [this] {
    const int key = key_->value();
    if (key != 0 && key < 10000) {
      details_->setPlainText(tr("The key must have five digits (10000-99999), or be 'random'."));
      return;
    }
    Q_EMIT caseRequested(length_->value(), depth_->value(), key == 0 ? QString() : QString::number(key),
                         static_cast<quint64>(seed_->value()));
  });
  connect(measure_, &QComboBox::currentIndexChanged, this, [this](int i) { setShowDigits(i == 1); });
  connect(load, &QPushButton::clicked, this, &RetrievalPanel::gridLoadRequested);
  connect(compare, &QPushButton::clicked, this, &RetrievalPanel::comparisonGridLoadRequested);
  connect(document, &TraceDocument::gridChanged, this, &RetrievalPanel::onGridChanged);
  connect(grid_, &QCustomPlot::mousePress, this, [this](QMouseEvent* e) {
    if (!document_->hasGrid()) return;
    const int li = static_cast<int>(std::lround(grid_->yAxis->pixelToCoord(e->position().y())));
    const int di = static_cast<int>(std::lround(grid_->xAxis->pixelToCoord(e->position().x())));
    if (li >= 0 && li < gridLengths() && di >= 0 && di < gridDepths()) selectCell(li, di);
  });
  // A cell of the comparison selects the same length and depth of the first grid, so both
  // answers are listed together; a cell only the comparison has lists its cases alone.
  connect(comparison_grid_, &QCustomPlot::mousePress, this, [this](QMouseEvent* e) {
    const eval::PasskeyGrid& other = document_->comparisonGrid();
    const int li = static_cast<int>(std::lround(comparison_grid_->yAxis->pixelToCoord(e->position().y())));
    const int di = static_cast<int>(std::lround(comparison_grid_->xAxis->pixelToCoord(e->position().x())));
    if (li < 0 || li >= static_cast<int>(other.lengths.size()) || di < 0 || di >= static_cast<int>(other.depths.size())) return;
    const eval::PasskeyGrid& grid = document_->grid();
    const int l = grid.length_index(static_cast<double>(other.lengths[li])), d = grid.depth_index(other.depths[di]);
    if (l >= 0 && d >= 0) {
      selectCell(l, d);
      return;
    }
    details_->setHtml(tr("<h3>%1</h3><p>Only %2 has this cell.</p>")
                          .arg(cellTitle(other, other.lengths[li], other.depths[di]),
                               gridModel(document_->comparisonGridResults()).toHtmlEscaped()) +
                      cellCases(document_->comparisonGridResults(), other.lengths[li], other.depths[di], nullptr));
  });
}

QString RetrievalPanel::gridModel(const Json& results) {
  QString name = QObject::tr("the model");
  if (results.is_object() && results.contains("meta") && results.at("meta").is_object()) {
    const Json& meta = results.at("meta");
    if (meta.contains("checkpoint") && meta.at("checkpoint").is_string())
      name = QFileInfo(QString::fromStdString(meta.at("checkpoint").as_string())).fileName();
    if (meta.contains("trained") && meta.at("trained").is_bool() && !meta.at("trained").as_bool())
      name = QObject::tr("untrained weights");
  }
  if (results.is_object() && results.contains("settings") && results.at("settings").is_object()) {
    const Json& settings = results.at("settings");
    if (settings.contains("decimation")) name += QObject::tr(" (DeciMamba)");
    else if (settings.contains("memory_enabled") && settings.at("memory_enabled").is_bool() &&
             !settings.at("memory_enabled").as_bool())
      name += QObject::tr(" (memory off)");
  }
  return name;
}

bool RetrievalPanel::showsComparisonGrid() const { return document_->hasComparisonGrid() && !comparison_grid_->isHidden(); }

// A docs miss, with what it named where the result says (results written before this say nothing).
static QString missedDocument(const Json& c) {
  const QString missed = QObject::tr("<span style='color:#d03050'>missed</span>");
  if (!c.contains("answered") || !c.at("answered").is_string()) return missed;
  const std::string answered = c.at("answered").as_string();
  if (answered == eval::document_answer_name(eval::DocumentAnswer::OtherDocument))
    return missed + QObject::tr(": another document's id");
  if (answered == eval::document_answer_name(eval::DocumentAnswer::GoldenCutShort))
    return missed + QObject::tr(": the golden id cut short");
  if (answered == eval::document_answer_name(eval::DocumentAnswer::NoDocumentId))
    return missed + QObject::tr(": no document's id");
  return missed;
}

QString RetrievalPanel::cellCases(const Json& results, int64_t L, double depth, const Json** first) const {
  QString html;
  if (!results.is_object() || !results.contains("cases")) return html;
  if (eval::is_document_result(results)) {
    // A docs case is listed, not run: the Explorer's runs are passkey and facts cases.
    for (const Json& c : results.at("cases").as_array()) {
      const int64_t noise = c.at("noise_documents").as_int(), golden = c.at("golden_index").as_int();
      if (noise != L || std::abs(eval::document_position_bin(golden, noise) - depth) > 1e-9) continue;
      html += tr("<p>sample %1: <i>%2</i> The golden document is <b>%3</b> (document %4 of %5); answer <b>%6</b> &mdash; %7</p>")
                  .arg(c.contains("sample") ? c.at("sample").as_int() : 0)
                  .arg(c.contains("question") && c.at("question").is_string()
                           ? QString::fromStdString(c.at("question").as_string()).toHtmlEscaped()
                           : QString())
                  .arg(c.at("golden_id").as_int())
                  .arg(golden + 1)
                  .arg(noise + 1)
                  .arg(QString::fromStdString(c.at("answer").as_string()).toHtmlEscaped())
                  .arg(c.at("hit").as_bool() ? tr("found") : missedDocument(c));
      // Where the answer looked, digit by digit: a wrong document, or the right one read out of order.
      const std::string reads = eval::document_read_path(c);
      if (!reads.empty())
        html += tr("<p style='margin-left:1em'><small>last layer's reads, answer token by token: %1</small></p>")
                    .arg(QString::fromStdString(reads).toHtmlEscaped());
    }
    return html;
  }
  for (const Json& c : results.at("cases").as_array()) {
    if (c.at("length").as_int() != L || std::abs(c.at("depth").as_double() - depth) > 1e-9) continue;
    // The case a click runs: the cell's first miss, else its first case (a failure is what one
    // opens a cell to dig into).
    if (first && (!*first || ((*first)->at("hit").as_bool() && !c.at("hit").as_bool()))) *first = &c;
    html += tr("<p>sample %1: key <b>%2</b>, answer <b>%3</b> &mdash; %4</p>")
                .arg(c.contains("sample") ? c.at("sample").as_int() : 0)
                .arg(keyOf(c).toHtmlEscaped())
                .arg(QString::fromStdString(c.at("answer").as_string()).toHtmlEscaped())
                .arg(c.at("hit").as_bool() ? tr("found") : tr("<span style='color:#d03050'>missed</span>"));
  }
  return html;
}

QString RetrievalPanel::positionName(double bin) {
  return bin < 1.0 / 3.0 ? tr("first third") : bin < 2.0 / 3.0 ? tr("middle third") : tr("last third");
}

QString RetrievalPanel::cellTitle(const eval::PasskeyGrid& grid, int64_t length, double depth) {
  return grid.documents ? tr("%1 noise documents, the golden one in the %2").arg(length).arg(positionName(depth))
                        : tr("%1 tokens, depth %2").arg(length).arg(depth);
}

QString RetrievalPanel::keyOf(const Json& record) { return QString::fromStdString(eval::case_key_text(record)); }

std::vector<Figure> RetrievalPanel::figures() const {
  return {{QStringLiteral("passkey-grid"), grid_}, {QStringLiteral("passkey-grid-comparison"), comparison_grid_}};
}

QString RetrievalPanel::csv(const QString& figure, CsvDetail /*every value is drawn*/) const {
  auto number = [](double v) { return std::isnan(v) ? QString() : QString::number(v); };
  const eval::PasskeyGrid& grid =
      figure == QLatin1String("passkey-grid-comparison") ? document_->comparisonGrid() : document_->grid();
  QString out = grid.documents ? QStringLiteral("noise_documents,golden_position,accuracy,digit_accuracy\n")
                               : QStringLiteral("length,depth,accuracy,digit_accuracy\n");
  for (size_t i = 0; i < grid.lengths.size(); ++i)
    for (size_t j = 0; j < grid.depths.size(); ++j)
      out += QStringLiteral("%1,%2,%3,%4\n").arg(grid.lengths[i]).arg(grid.depths[j])
                 .arg(number(grid.accuracy[i][j]), number(grid.digit_accuracy[i][j]));
  return out;
}

void RetrievalPanel::setShowDigits(bool digits) {
  show_digits_ = digits;
  if (measure_->currentIndex() != (digits ? 1 : 0)) measure_->setCurrentIndex(digits ? 1 : 0);
  if (document_->hasGrid()) drawGrid();
}

int RetrievalPanel::gridLengths() const { return static_cast<int>(document_->grid().lengths.size()); }
int RetrievalPanel::gridDepths() const { return static_cast<int>(document_->grid().depths.size()); }

void RetrievalPanel::onGridChanged() {
  // Each grid's hits by key length and wording and its misses' shapes, where its cases vary.
  auto breakdown = [](const Json& results) {
    const std::string b = eval::grid_breakdown(results).describe();
    return b.empty() ? QString() : QStringLiteral("\n  ") + QString::fromStdString(b);
  };
  QString text = document_->hasGrid() ? tr("Grid: %1 (%2; click a cell)")
                                                .arg(document_->gridSource(),
                                                     QString::fromStdString(document_->grid().case_description)) +
                                            breakdown(document_->gridResults())
                                      : tr("No grid loaded: run `memmamba eval passkey` and load its JSON.");
  if (document_->hasComparisonGrid())
    text += tr("\nBeside it: %1 (%2)").arg(document_->comparisonGridSource(),
                                           QString::fromStdString(document_->comparisonGrid().case_description)) +
            breakdown(document_->comparisonGridResults());
  grid_label_->setText(text);
  drawGrid();
}

void RetrievalPanel::drawGrid() {
  const bool two = document_->hasComparisonGrid();
  grid_->setVisible(document_->hasGrid());  // no empty axes: the label above says how to get a grid
  drawGridOn(grid_, document_->grid(), two ? gridModel(document_->gridResults()) : QString());
  comparison_grid_->setVisible(two);
  if (two) drawGridOn(comparison_grid_, document_->comparisonGrid(), gridModel(document_->comparisonGridResults()));
}

void RetrievalPanel::drawGridOn(QCustomPlot* plot, const eval::PasskeyGrid& grid, const QString& title) {
  plot->clearPlottables();
  plot->clearItems();
  // The model's name above the grid when two are side by side.
  if (plot->plotLayout()->rowCount() > 1) {
    plot->plotLayout()->removeAt(0);
    plot->plotLayout()->simplify();
  }
  if (!title.isEmpty()) {
    plot->plotLayout()->insertRow(0);
    plot->plotLayout()->addElement(0, 0, new QCPTextElement(plot, title, QFont(font().family(), font().pointSize(), QFont::Bold)));
  }
  auto* map = new QCPColorMap(plot->xAxis, plot->yAxis);
  const int nl = static_cast<int>(grid.lengths.size()), nd = static_cast<int>(grid.depths.size());
  // A colour map needs two cells along each axis to know their width: a grid of one length
  // (or one depth) is drawn as two equal half-cells around it.
  const int cells_x = std::max(2, nd), cells_y = std::max(2, nl);
  map->data()->setSize(cells_x, cells_y);
  map->data()->setRange(nd > 1 ? QCPRange(0, nd - 1) : QCPRange(-0.25, 0.25),
                        nl > 1 ? QCPRange(0, nl - 1) : QCPRange(-0.25, 0.25));
  const auto& values = show_digits_ ? grid.digit_accuracy : grid.accuracy;
  for (int i = 0; i < nl; ++i)
    for (int j = 0; j < nd; ++j) {
      for (int cx = nd > 1 ? j : 0; cx <= (nd > 1 ? j : 1); ++cx)
        for (int cy = nl > 1 ? i : 0; cy <= (nl > 1 ? i : 1); ++cy) map->data()->setCell(cx, cy, values[i][j]);
      auto* label = new QCPItemText(plot);
      label->position->setCoords(j, i);
      label->setText(std::isnan(values[i][j]) ? QStringLiteral("-") : QString::number(values[i][j], 'f', 2));
      label->setColor(values[i][j] > 0.6 ? Qt::black : Qt::white);
    }
  QCPColorGradient g;
  applyViridis(g);
  g.setNanHandling(QCPColorGradient::nhTransparent);
  map->setGradient(g);
  map->setDataRange(QCPRange(0, 1));
  map->setInterpolate(false);
  auto lengthTicks = QSharedPointer<QCPAxisTickerText>::create();
  for (int i = 0; i < nl; ++i) {
    const int64_t L = grid.lengths[i];
    const QString label = L >= (1 << 20) && L % (1 << 20) == 0 ? QStringLiteral("%1M").arg(L >> 20)
                          : L >= 1024 && L % 1024 == 0        ? QStringLiteral("%1k").arg(L / 1024)
                                                              : QString::number(L);
    lengthTicks->addTick(i, label);
  }
  auto depthTicks = QSharedPointer<QCPAxisTickerText>::create();
  for (int j = 0; j < nd; ++j)
    depthTicks->addTick(j, grid.documents ? positionName(grid.depths[j]) : QString::number(grid.depths[j], 'g', 3));
  plot->yAxis->setTicker(lengthTicks);
  plot->xAxis->setTicker(depthTicks);
  plot->xAxis->setLabel(grid.documents ? tr("where the golden document stands") : tr("needle depth"));
  plot->yAxis->setLabel(grid.documents ? tr("noise documents") : tr("context length (tokens)"));
  plot->xAxis->setRange(-0.5, nd - 0.5);
  plot->yAxis->setRange(-0.5, nl - 0.5);
  redraw(plot);
}

void RetrievalPanel::selectCell(int li, int di) {
  if (li < 0 || li >= gridLengths() || di < 0 || di >= gridDepths()) return;
  const eval::PasskeyGrid& grid = document_->grid();
  const Json& results = document_->gridResults();
  const int64_t L = grid.lengths[li];
  const double depth = grid.depths[di];
  if (!grid.documents) {
    // The case fields follow the clicked cell, so that "Run passkey case" varies it from there.
    length_->setValue(static_cast<int>(std::min<int64_t>(L, length_->maximum())));
    depth_->setValue(depth);
  }
  QString html = tr("<h3>%1: accuracy %2</h3>").arg(cellTitle(grid, L, depth)).arg(grid.accuracy[li][di]);
  if (!std::isnan(grid.digit_accuracy[li][di]))
    html += tr("<p>Key digits in place: %1</p>").arg(grid.digit_accuracy[li][di], 0, 'f', 2);
  const Json* first = nullptr;
  const bool two = document_->hasComparisonGrid();
  if (two) html += tr("<p><b>%1</b></p>").arg(gridModel(results).toHtmlEscaped());
  html += cellCases(results, L, depth, &first);
  if (two) {
    // The same cell of the grid beside it: both models' answers to the same cases together.
    const eval::PasskeyGrid& other = document_->comparisonGrid();
    const int l = other.length_index(static_cast<double>(L)), d = other.depth_index(depth);
    const QString name = gridModel(document_->comparisonGridResults()).toHtmlEscaped();
    if (l < 0 || d < 0)
      html += tr("<p><b>%1</b>: no such cell</p>").arg(name);
    else
      html += tr("<p><b>%1</b>: accuracy %2</p>").arg(name).arg(other.accuracy[l][d]) +
              cellCases(document_->comparisonGridResults(), L, depth, nullptr);
  }
  if (!first) details_->setHtml(html);
  if (first) {
    const uint64_t seed = results.contains("seed") ? static_cast<uint64_t>(results.at("seed").as_int()) : 0;
    const uint64_t sample = first->contains("sample") ? static_cast<uint64_t>(first->at("sample").as_int()) : 0;
    Q_EMIT caseSelected(L, depth, keyOf(*first), seed * 1000003 + sample);
    showCase(*first, html);
  }
}

QString RetrievalPanel::readablePiece(const std::string& piece) {
  return QString::fromStdString(eval::readable_piece(piece));
}

QString RetrievalPanel::runOnSource(const Json& r) const {
  // The answer token right after the key's last character: which answer read that is, then
  // how many layers read another fact's value there more than any key note.
  if (!r.contains("answer_pieces") || !r.contains("needles") || !r.contains("layers")) return {};
  const QString key = keyOf(r);
  int after = -1, written = 0;
  const auto& pieces = r.at("answer_pieces").as_array();
  for (size_t i = 0; i < pieces.size() && after < 0; ++i) {
    written += readablePiece(pieces[i].as_string()).remove(QChar(0x2581)).size();
    if (written >= key.size()) after = static_cast<int>(i) + 1;
  }
  if (after < 0) return {};
  std::map<int64_t, int> by_fact;
  int layers = 0;
  for (const Json& l : r.at("layers").as_array()) {
    if (!l.contains("answer_reads")) continue;
    ++layers;
    const auto& reads = l.at("answer_reads").as_array();
    if (after >= static_cast<int>(reads.size())) continue;
    const Json& read = reads[static_cast<size_t>(after)];
    if (!otherValueRead(r, read, read.at("top_key_weight").as_double()).isEmpty()) ++by_fact[read.at("other_fact").as_int()];
  }
  if (by_fact.empty()) return {};
  const auto most = std::max_element(by_fact.begin(), by_fact.end(), [](const auto& a, const auto& b) { return a.second < b.second; });
  const Json& needle = r.at("needles").as_array()[static_cast<size_t>(most->first)];
  return tr("After the key's last character, %1 of %2 layers read %3's value %4 more than any key note: the "
            "answer went on from another fact's value.")
      .arg(most->second).arg(layers)
      .arg(QString::fromStdString(needle.at("label").as_string()).toHtmlEscaped())
      .arg(QString::fromStdString(needle.at("value").as_string()).toHtmlEscaped());
}

QString RetrievalPanel::otherValueRead(const Json& r, const Json& read, double key_weight) const {
  // Labelled facts: the other fact's value note this answer token read most, where it drew
  // more than the key's (a run-on or a wrong value read from elsewhere).
  if (!read.contains("other_weight") || !r.contains("needles")) return {};
  const double weight = read.at("other_weight").as_double();
  const int64_t fact = read.at("other_fact").as_int();
  const auto& needles = r.at("needles").as_array();
  if (weight < 0.05 || weight <= key_weight || fact < 0 || fact >= static_cast<int64_t>(needles.size())) return {};
  const QString value = QString::fromStdString(needles[static_cast<size_t>(fact)].at("value").as_string());
  const QString label = QString::fromStdString(needles[static_cast<size_t>(fact)].at("label").as_string());
  const int64_t at = read.at("other_char").as_int();
  const QString what = at >= 0 && at < value.size()
                           ? tr("%1 (digit %2 of %3, %4)").arg(value[static_cast<int>(at)]).arg(at + 1).arg(value, label)
                           : tr("%1 (%2)").arg(value, label);
  return QStringLiteral("<span style='color:#d03050'>%1 %2</span>").arg(what.toHtmlEscaped()).arg(weight, 0, 'f', 2);
}

QString RetrievalPanel::answerReadsTable(const Json& r) const {
  // Which key token each answer token read in each layer (the key note with the most weight).
  const QString key = keyOf(r);
  // Up to two tokens past the key's length, as far as any layer has reads (a run in the app
  // records only the last prompt token; the evaluation records every generated token).
  int columns = 0;
  for (const Json& l : r.at("layers").as_array())
    if (l.contains("answer_reads")) columns = std::max(columns, static_cast<int>(l.at("answer_reads").as_array().size()));
  columns = std::min(columns, static_cast<int>(key.size()) + 2);
  QString rows;
  int layer = 0;
  for (const Json& l : r.at("layers").as_array()) {
    const int this_layer = layer++;
    if (!l.contains("answer_reads")) continue;
    const auto& reads = l.at("answer_reads").as_array();
    QString cells;
    bool any = false;
    for (int i = 0; i < columns; ++i) {
      if (i >= static_cast<int>(reads.size())) {
        cells += QStringLiteral("<td></td>");
        continue;
      }
      const Json& read = reads[static_cast<size_t>(i)];
      const double weight = read.at("top_key_weight").as_double();
      const int64_t digit = read.at("key_digit").as_int();
      const QString other = otherValueRead(r, read, weight);
      if (!other.isEmpty()) {
        any = true;
        cells += QStringLiteral("<td>%1</td>").arg(other);
        continue;
      }
      if (weight < 0.05) {
        cells += QStringLiteral("<td>-</td>");
        continue;
      }
      any = true;
      const QString what = digit >= 0 && digit < key.size()
                               ? tr("%1 (digit %2)").arg(key[static_cast<int>(digit)]).arg(digit + 1)
                               : tr("token %1").arg(read.at("top_key_source").as_int());
      cells += QStringLiteral("<td>%1 %2</td>").arg(what).arg(weight, 0, 'f', 2);
    }
    if (any) rows += QStringLiteral("<tr><td>%1</td>%2</tr>").arg(this_layer).arg(cells);
  }
  if (rows.isEmpty()) return {};
  QString header = tr("<tr><th>layer</th>");
  const bool has_pieces = r.contains("answer_pieces");
  for (int i = 0; i < columns; ++i) {
    QString produced = tr("answer token %1").arg(i + 1);
    if (has_pieces && i < static_cast<int>(r.at("answer_pieces").as_array().size()))
      produced = readablePiece(r.at("answer_pieces").as_array()[static_cast<size_t>(i)].as_string()).toHtmlEscaped();
    header += QStringLiteral("<th>%1</th>").arg(produced);
  }
  header += QStringLiteral("</tr>");
  return tr("<p>What each answer token read: the key note with the most attention, and its weight "
            "(columns: the token produced; - where the key notes got under 0.05; in red, another "
            "fact's value note where it drew more than the key's)</p>") +
         QStringLiteral("<table border=1 cellspacing=0 cellpadding=3>") + header + rows + QStringLiteral("</table>");
}

void RetrievalPanel::showComparisonAnswer(const Json& r, const QString& model) {
  try {
    const bool hit = r.at("hit").as_bool();
    QString html = tr("<hr><p><b>%1</b> on the same case: answer <b>%2</b> &nbsp; %3")
                       .arg(model.toHtmlEscaped())
                       .arg(QString::fromStdString(r.at("answer").as_string()).toHtmlEscaped())
                       .arg(hit ? tr("<span style='color:#20a060'>found</span>") : tr("<span style='color:#d03050'>missed</span>"));
    if (r.contains("digits_right") && r.at("digits_right").is_integer())
      html += tr(" &nbsp; key characters in place: %1 of %2").arg(r.at("digits_right").as_int()).arg(keyOf(r).size());
    if (r.contains("key_survived_decimation") && r.at("key_survived_decimation").is_bool())
      html += r.at("key_survived_decimation").as_bool() ? tr("; the key survived every decimating layer")
                                                         : tr("; the key was dropped by decimation");
    details_->append(html + QStringLiteral("</p>"));
  } catch (const std::exception& e) {
    details_->append(tr("<p>The comparison's case record is incomplete: %1</p>").arg(QString::fromUtf8(e.what()).toHtmlEscaped()));
  }
}

void RetrievalPanel::showCase(const Json& r, const QString& preface) {
  try {
    QString html = preface + tr("<h3>Passkey case: %1 tokens, depth %2</h3>")
                       .arg(r.at("prompt_tokens").as_int()).arg(r.at("actual_depth").as_double(), 0, 'f', 3);
    const bool hit = r.at("hit").as_bool();
    html += tr("<p>Truth <b>%1</b> &nbsp; answer <b>%2</b> &nbsp; %3</p>")
                .arg(keyOf(r).toHtmlEscaped())
                .arg(QString::fromStdString(r.at("answer").as_string()).toHtmlEscaped())
                .arg(hit ? tr("<span style='color:#20a060'>found</span>") : tr("<span style='color:#d03050'>missed</span>"));
    if (!hit && r.contains("digits_right")) {
      const int64_t right = r.at("digits_right").as_int();
      const int64_t size = keyOf(r).size();
      // A near miss: every character in place, then more in the same word ("51970.d"). The
      // protocol counts it as a miss; the memory held the key and the answer's form failed.
      if (size > 0 && right == size)
        html += tr("<p><b>Near miss</b>: every character of the key is in place, but the answer's word goes on "
                   "after it; exact match wants the key as a word of its own. The key was carried; the answer's "
                   "form failed. %1</p>").arg(runOnSource(r));
      else
        html += tr("<p>Key characters in place: %1 of %2</p>").arg(right).arg(size);
    }
    if (r.contains("needles") && r.at("needles").is_array()) {
      // Labelled facts: which were in the haystack, which was asked, and whether the answer
      // gave another fact's value (the read found a note, but not the asked one).
      const int64_t asked = r.contains("asked") && r.at("asked").is_integer() ? r.at("asked").as_int() : -1;
      html += tr("<p>Facts in the haystack (the asked one in bold):</p><ul>");
      int64_t i = 0;
      for (const Json& n : r.at("needles").as_array()) {
        if (!n.is_object() || !n.contains("label") || !n.contains("value")) continue;
        const QString line = tr("%1: %2 at depth %3")
                                 .arg(QString::fromStdString(n.at("label").as_string()).toHtmlEscaped(),
                                      QString::fromStdString(n.at("value").as_string()).toHtmlEscaped())
                                 .arg(n.contains("actual_depth") ? n.at("actual_depth").as_double() : 0.0, 0, 'f', 2);
        html += i++ == asked ? QStringLiteral("<li><b>%1</b></li>").arg(line) : QStringLiteral("<li>%1</li>").arg(line);
      }
      html += QStringLiteral("</ul>");
      if (r.contains("answered_other_fact") && r.at("answered_other_fact").is_string() &&
          !r.at("answered_other_fact").as_string().empty())
        html += tr("<p style='color:#d03050'>The answer gave the value of another fact: the %1.</p>")
                    .arg(QString::fromStdString(r.at("answered_other_fact").as_string()).toHtmlEscaped());
    }
    if (r.contains("key_survived_decimation") && r.at("key_survived_decimation").is_bool()) {
      const bool survived = r.at("key_survived_decimation").as_bool();
      html += tr("<p>DeciMamba: %1 (%2 of the key's %3 tokens in the last layer's scan)</p>")
                  .arg(survived ? tr("the key survived every decimating layer")
                                : tr("<span style='color:#d03050'>the key was dropped</span>"))
                  .arg(r.contains("key_tokens_kept") ? r.at("key_tokens_kept").as_int() : 0)
                  .arg(r.contains("key_token_positions") ? static_cast<int64_t>(r.at("key_token_positions").as_array().size()) : 0);
    }
    if (r.contains("layers")) {
      // Fact records say how much of the answer's read went to the other facts' values: a read
      // that confuses the labels shows up there.
      const bool facts = !r.at("layers").as_array().empty() && r.at("layers").as_array().front().is_object() &&
                         r.at("layers").as_array().front().contains("answer_weight_on_other_values");
      html += tr("<table border=1 cellspacing=0 cellpadding=3><tr><th>layer</th><th>key tokens noted</th>"
                 "<th>key notes in pool at answer</th><th>answer weight on key notes</th>%1</tr>")
                  .arg(facts ? tr("<th>on other facts' values</th>") : QString());
      int layer = 0;
      for (const Json& l : r.at("layers").as_array()) {
        int in_pool = 0, total = 0;
        if (l.contains("key_notes"))
          for (const Json& n : l.at("key_notes").as_array()) {
            ++total;
            in_pool += n.at("in_pool_at_answer").as_bool();
          }
        auto weight = [&](const char* key) {
          return l.contains(key) && l.at(key).is_number() ? QString::number(l.at(key).as_double(), 'f', 3)
                                                          : QStringLiteral("-");
        };
        html += QStringLiteral("<tr><td>%1</td><td>%2</td><td>%3 / %4</td><td>%5</td>%6</tr>")
                    .arg(layer++)
                    .arg(l.contains("key_tokens_noted") ? l.at("key_tokens_noted").as_int() : 0)
                    .arg(in_pool).arg(total)
                    .arg(weight("answer_weight_on_key_notes"),
                         facts ? QStringLiteral("<td>%1</td>").arg(weight("answer_weight_on_other_values")) : QString());
      }
      html += QStringLiteral("</table>");
      html += answerReadsTable(r);
    }
    details_->setHtml(html);
  } catch (const std::exception& e) {
    details_->setPlainText(tr("This case record is incomplete: %1").arg(QString::fromStdString(e.what())));
  }
}

}  // namespace memmamba::views
