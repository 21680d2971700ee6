// An observer that hands every report to another observer on a thread of its own, in the
// order they came: the model goes on with the next layers while the reports are turned into
// a trace (on the GPU, building a chunk's attention rows took as long as computing it).
#pragma once
#include <condition_variable>
#include <deque>
#include <exception>
#include <functional>
#include <mutex>
#include <thread>

#include "model/run_observer.h"

namespace memmamba {

class QueuedObserver : public RunObserver {
 public:
  // `target` is only touched by the worker thread until drain() returns; it must outlive this.
  explicit QueuedObserver(RunObserver& target);
  ~QueuedObserver() override;
  QueuedObserver(const QueuedObserver&) = delete;
  QueuedObserver& operator=(const QueuedObserver&) = delete;

  // Waits until every report so far reached the target; rethrows the first error a report raised there.
  void drain();

  int64_t attention_width() const override { return width_; }
  void layer_tokens(int32_t layer, int64_t pos0, int64_t n, const float* importance, const float* istate,
                    const uint8_t* flags, const float* token_norm, const float* layer_norm,
                    const float* log_decay) override;
  void notes_made(int32_t layer, const std::vector<NoteMade>& notes) override;
  void pool_events(int32_t layer, const std::vector<PoolEventRecord>& events) override;
  // The rows' entries are copied (the caller's arrays live only for the call).
  void attention_rows(int32_t layer, bool cross_layer, const AttentionRowsIn& rows) override;
  void retention(int32_t layer, int64_t source, std::vector<float> values) override;
  void later(std::function<void(RunObserver&)> report) override;

 private:
  static constexpr size_t kMaxQueued = 256;
  void enqueue(std::function<void()> job);
  void work();

  RunObserver& target_;
  const int64_t width_;
  std::mutex mutex_;
  std::condition_variable changed_;
  std::deque<std::function<void()>> jobs_;
  bool busy_ = false, stopping_ = false;
  std::exception_ptr error_;
  std::thread worker_;
};

}  // namespace memmamba
