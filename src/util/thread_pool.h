// A fixed pool of worker threads, each owning a `State` (e.g. a JPEG decoder), running tasks
// in submission order.
#pragma once

#include <condition_variable>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

namespace coatnet {

template <typename State>
class ThreadPool {
 public:
  using Task = std::function<void(State&)>;
  explicit ThreadPool(int threads) {
    for (int i = 0; i < std::max(1, threads); ++i)
      workers_.emplace_back([this] {
        State state;
        while (true) {
          Task task;
          {
            std::unique_lock<std::mutex> lock(mu_);
            cv_.wait(lock, [this] { return stop_ || !tasks_.empty(); });
            if (tasks_.empty()) return;  // stopping and drained
            task = std::move(tasks_.front());
            tasks_.pop_front();
          }
          task(state);
        }
      });
  }
  ~ThreadPool() {
    {
      std::lock_guard<std::mutex> lock(mu_);
      stop_ = true;
    }
    cv_.notify_all();
    for (auto& t : workers_) t.join();
  }
  void submit(Task t) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      tasks_.push_back(std::move(t));
    }
    cv_.notify_one();
  }
  int size() const { return static_cast<int>(workers_.size()); }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<Task> tasks_;
  bool stop_ = false;
  std::vector<std::thread> workers_;
};

}  // namespace coatnet
