#include "thread_pool.h"

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <deque>
#include <exception>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

namespace umbra {
namespace {

// Shared state of one parallel_for call; helpers hold it by shared_ptr so a late helper
// finds an exhausted counter instead of a dangling job.
struct Job {
  const std::function<void(size_t)>* body = nullptr;
  size_t count = 0;
  std::atomic<size_t> next{0};
  std::atomic<size_t> done{0};
  std::mutex mutex;
  std::condition_variable finished;
  std::exception_ptr error;

  void run() {
    size_t local_done = 0;
    for (;;) {
      const size_t i = next.fetch_add(1, std::memory_order_relaxed);
      if (i >= count) break;
      try {
        (*body)(i);
      } catch (...) {
        std::lock_guard<std::mutex> lock(mutex);
        if (!error) error = std::current_exception();
      }
      ++local_done;
    }
    if (local_done == 0) return;
    if (done.fetch_add(local_done, std::memory_order_acq_rel) + local_done == count) {
      std::lock_guard<std::mutex> lock(mutex);
      finished.notify_all();
    }
  }
};

class Pool {
 public:
  explicit Pool(int helpers) {
    for (int i = 0; i < helpers; ++i) threads_.emplace_back([this] { loop(); });
  }
  ~Pool() {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      stopping_ = true;
    }
    wake_.notify_all();
    for (auto& t : threads_) t.join();
  }
  void post(const std::shared_ptr<Job>& job, int copies) {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      for (int i = 0; i < copies; ++i) queue_.push_back(job);
    }
    wake_.notify_all();
  }
  int helpers() const { return static_cast<int>(threads_.size()); }

 private:
  void loop() {
    for (;;) {
      std::shared_ptr<Job> job;
      {
        std::unique_lock<std::mutex> lock(mutex_);
        wake_.wait(lock, [this] { return stopping_ || !queue_.empty(); });
        if (stopping_) return;
        job = std::move(queue_.front());
        queue_.pop_front();
      }
      job->run();
    }
  }
  std::vector<std::thread> threads_;
  std::deque<std::shared_ptr<Job>> queue_;
  std::mutex mutex_;
  std::condition_variable wake_;
  bool stopping_ = false;
};

Pool& pool() {
  // Helpers = cores - 1: the calling thread always does its share.
  static Pool instance(std::max(0, hardware_threads() - 1));
  return instance;
}

}  // namespace

int hardware_threads() { return std::max(1u, std::thread::hardware_concurrency()); }

void parallel_for(size_t count, int threads, const std::function<void(size_t)>& body) {
  if (count == 0) return;
  const int want = static_cast<int>(std::min<size_t>(count, static_cast<size_t>(std::max(1, threads))));
  if (want <= 1) {
    for (size_t i = 0; i < count; ++i) body(i);
    return;
  }
  auto job = std::make_shared<Job>();
  job->body = &body;
  job->count = count;
  pool().post(job, std::min(want - 1, pool().helpers()));
  job->run();
  {
    std::unique_lock<std::mutex> lock(job->mutex);
    job->finished.wait(lock, [&] { return job->done.load(std::memory_order_acquire) == count; });
  }
  if (job->error) std::rethrow_exception(job->error);
}

}  // namespace umbra
