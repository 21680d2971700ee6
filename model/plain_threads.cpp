#include "model/plain_threads.h"

#include <condition_variable>
#include <cstdint>
#include <exception>
#include <mutex>
#include <thread>
#include <vector>

namespace memmamba {

namespace {

class PlainThreads {
 public:
  explicit PlainThreads(size_t workers) {
    for (size_t i = 0; i < workers; ++i) threads_.emplace_back([this, i] { work(i); });
  }
  ~PlainThreads() {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      stopping_ = true;
    }
    wake_.notify_all();
    for (std::thread& t : threads_) t.join();
  }
  size_t workers() const { return threads_.size(); }

  void run(size_t count, const std::function<void(size_t)>& task) {
    if (count == 0) return;
    const std::lock_guard<std::mutex> one_fan_out(fan_out_);
    const size_t on_workers = std::min(count - 1, threads_.size());
    {
      std::lock_guard<std::mutex> lock(mutex_);
      task_ = &task;
      on_workers_ = on_workers;
      left_ = on_workers;
      error_ = nullptr;
      ++generation_;
    }
    wake_.notify_all();
    std::exception_ptr mine;
    // This thread takes the parts the workers do not (the last one, or all when there are none).
    for (size_t part = on_workers; part < count; ++part) {
      try {
        task(part);
      } catch (...) {
        if (!mine) mine = std::current_exception();
      }
    }
    std::unique_lock<std::mutex> lock(mutex_);
    done_.wait(lock, [this] { return left_ == 0; });
    task_ = nullptr;
    if (mine) std::rethrow_exception(mine);
    if (error_) std::rethrow_exception(error_);
  }

 private:
  void work(size_t index) {
    uint64_t seen = 0;
    std::unique_lock<std::mutex> lock(mutex_);
    for (;;) {
      wake_.wait(lock, [&] { return stopping_ || generation_ != seen; });
      if (generation_ == seen) return;  // stopping, and no fan-out waits for this thread
      seen = generation_;
      if (index >= on_workers_) continue;
      const std::function<void(size_t)>* task = task_;
      lock.unlock();
      std::exception_ptr failed;
      try {
        (*task)(index);
      } catch (...) {
        failed = std::current_exception();
      }
      lock.lock();
      if (failed && !error_) error_ = failed;
      if (--left_ == 0) done_.notify_one();
    }
  }

  std::vector<std::thread> threads_;
  std::mutex fan_out_, mutex_;
  std::condition_variable wake_, done_;
  const std::function<void(size_t)>* task_ = nullptr;
  size_t on_workers_ = 0, left_ = 0;
  uint64_t generation_ = 0;
  std::exception_ptr error_;
  bool stopping_ = false;
};

PlainThreads& shared_threads() {
  static PlainThreads threads(plain_thread_count() - 1);
  return threads;
}

}  // namespace

size_t plain_thread_count() {
  const unsigned hardware = std::thread::hardware_concurrency();
  return std::clamp<size_t>(hardware == 0 ? 1 : hardware, 1, 8);
}

void run_on_plain_threads(size_t count, const std::function<void(size_t)>& task) {
  if (count <= 1) {
    if (count == 1) task(0);
    return;
  }
  shared_threads().run(count, task);
}

}  // namespace memmamba
