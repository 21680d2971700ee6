#include "model/queued_observer.h"

#include <algorithm>
#include <memory>
#include <type_traits>
#include <utility>

#include "model/profile.h"

namespace memmamba {

QueuedObserver::QueuedObserver(RunObserver& target)
    : target_(target), width_(target.attention_width()), worker_([this] { work(); }) {}

QueuedObserver::~QueuedObserver() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    stopping_ = true;
  }
  changed_.notify_all();
  worker_.join();
}

void QueuedObserver::enqueue(std::function<void()> job) {
  {
    // Bounded: reports hold the GPU tensors they copy from, so a model that runs far ahead
    // of the trace would hold a chunk's intermediates many times over.
    std::unique_lock<std::mutex> lock(mutex_);
    changed_.wait(lock, [this] { return jobs_.size() < kMaxQueued || stopping_; });
    jobs_.push_back(std::move(job));
  }
  changed_.notify_all();
}

void QueuedObserver::work() {
  std::unique_lock<std::mutex> lock(mutex_);
  for (;;) {
    changed_.wait(lock, [this] { return stopping_ || !jobs_.empty(); });
    if (stopping_) {  // destroyed without drain(): the run failed or was cancelled, its trace is dropped
      jobs_.clear();
      return;
    }
    std::function<void()> job = std::move(jobs_.front());
    jobs_.pop_front();
    busy_ = true;
    const bool skip = error_ != nullptr;  // after an error the trace is lost anyway
    lock.unlock();
    std::exception_ptr failed;
    if (!skip) {
      try {
        const profile::Section section("trace thread: every report", torch::kCPU);
        job();
      } catch (...) {
        failed = std::current_exception();
      }
    }
    job = nullptr;  // the arrays it held go now, not with the next job
    lock.lock();
    if (failed && !error_) error_ = failed;
    busy_ = false;
    changed_.notify_all();
  }
}

void QueuedObserver::drain() {
  std::unique_lock<std::mutex> lock(mutex_);
  changed_.wait(lock, [this] { return jobs_.empty() && !busy_; });
  if (error_) {
    std::exception_ptr e = error_;
    error_ = nullptr;
    std::rethrow_exception(e);
  }
}

void QueuedObserver::layer_tokens(int32_t layer, int64_t pos0, int64_t n, const float* importance, const float* istate,
                                  const uint8_t* flags, const float* token_norm, const float* layer_norm,
                                  const float* log_decay) {
  auto copy = [n](const auto* p) { return std::vector<std::remove_const_t<std::remove_pointer_t<decltype(p)>>>(p, p + n); };
  enqueue([this, layer, pos0, n, a = copy(importance), b = copy(istate), f = copy(flags), c = copy(token_norm),
           d = copy(layer_norm), e = copy(log_decay)] {
    target_.layer_tokens(layer, pos0, n, a.data(), b.data(), f.data(), c.data(), d.data(), e.data());
  });
}

void QueuedObserver::notes_made(int32_t layer, const std::vector<NoteMade>& notes) {
  enqueue([this, layer, notes] { target_.notes_made(layer, notes); });
}

void QueuedObserver::pool_events(int32_t layer, const std::vector<PoolEventRecord>& events) {
  enqueue([this, layer, events] { target_.pool_events(layer, events); });
}

void QueuedObserver::attention_rows(int32_t layer, bool cross_layer, const AttentionRowsIn& rows) {
  struct Held {
    AttentionRowsIn rows;
    std::vector<int32_t> column, bank;
    std::vector<float> weight;
  };
  auto held = std::make_shared<Held>();
  held->rows = rows;
  held->rows.rows_at.clear();
  const size_t w = static_cast<size_t>(rows.width), n = rows.positions.size() * w;
  held->column.resize(n);
  held->bank.resize(n);
  held->weight.resize(n);
  for (size_t r = 0; r < rows.positions.size(); ++r) {
    const size_t from = rows.first_entry(r);
    std::copy(rows.column + from, rows.column + from + w, held->column.begin() + r * w);
    std::copy(rows.bank + from, rows.bank + from + w, held->bank.begin() + r * w);
    std::copy(rows.weight + from, rows.weight + from + w, held->weight.begin() + r * w);
  }
  held->rows.column = held->column.data();
  held->rows.bank = held->bank.data();
  held->rows.weight = held->weight.data();
  enqueue([this, layer, cross_layer, held] { target_.attention_rows(layer, cross_layer, held->rows); });
}

void QueuedObserver::later(std::function<void(RunObserver&)> report) {
  enqueue([this, report = std::move(report)] { report(target_); });
}

void QueuedObserver::retention(int32_t layer, int64_t source, std::vector<float> values) {
  enqueue([this, layer, source, values = std::move(values)]() mutable { target_.retention(layer, source, std::move(values)); });
}

}  // namespace memmamba
