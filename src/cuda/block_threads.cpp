#include "cuda/block_threads.h"

#include <stdexcept>
#include <string>
#include <thread>

namespace coatnet::cuda {

namespace {
// Thrown in the threads released when the block cannot go on (a barrier no one can complete, or
// a thread's error): unwinds their bodies.
struct Released {};
}  // namespace

BlockThreads::BlockThreads(int threads, Order order)
    : threads_(threads), blocked_(threads, false), ended_(threads, false) {
  for (int i = 0; i < threads; ++i) {
    order_.push_back(order == Order::kAscending ? i : threads - 1 - i);
    wake_.push_back(std::make_unique<std::condition_variable>());
  }
}

void BlockThreads::wait_turn(std::unique_lock<std::mutex>& lock, int tid) {
  wake_[tid]->wait(lock, [&] { return stuck_ || (order_[position_] == tid && !blocked_[tid]); });
}

void BlockThreads::pass_turn() {
  for (int k = 1; k <= threads_; ++k) {
    const int next = (position_ + k) % threads_;
    const int tid = order_[next];
    if (!blocked_[tid] && !ended_[tid]) {
      position_ = next;
      wake_[tid]->notify_one();
      return;
    }
  }
  for (int tid = 0; tid < threads_; ++tid)
    if (!ended_[tid]) {  // waiting at a barrier that no thread left can complete
      stuck_ = true;
      for (auto& w : wake_) w->notify_one();
      return;
    }
}

void BlockThreads::barrier(int tid, int first, int count) {
  std::unique_lock<std::mutex> lock(mu_);
  if (stuck_) throw Released{};
  std::vector<int>& group = arrived_[{first, count}];
  group.push_back(tid);
  if (static_cast<int>(group.size()) == count) {
    for (int t : group) blocked_[t] = false;
    group.clear();
  } else {
    blocked_[tid] = true;
  }
  pass_turn();
  wait_turn(lock, tid);
  if (stuck_) throw Released{};
}

void BlockThreads::run(const std::function<void(int tid)>& body) {
  std::vector<std::thread> team;
  team.reserve(static_cast<size_t>(threads_));
  for (int tid = 0; tid < threads_; ++tid)
    team.emplace_back([&, tid] {
      std::unique_lock<std::mutex> lock(mu_);
      wait_turn(lock, tid);
      if (!stuck_) {
        lock.unlock();
        try {
          body(tid);
        } catch (const Released&) {
        } catch (...) {
          const std::lock_guard<std::mutex> guard(mu_);
          if (!error_) error_ = std::current_exception();
          stuck_ = true;  // the others may wait for this thread at a barrier
          for (auto& w : wake_) w->notify_one();
        }
        lock.lock();
      }
      ended_[tid] = true;
      blocked_[tid] = false;
      if (!stuck_) pass_turn();
    });
  for (std::thread& t : team) t.join();
  if (error_) std::rethrow_exception(error_);
  if (stuck_) {
    std::string groups;
    for (const auto& [key, who] : arrived_)
      if (!who.empty())
        groups += " threads " + std::to_string(key.first) + ".." +
                  std::to_string(key.first + key.second - 1) + ": " + std::to_string(who.size()) +
                  " of " + std::to_string(key.second) + " arrived, first " +
                  std::to_string(who.front()) + ";";
    throw std::logic_error(
        "BlockThreads: a barrier that not every thread of its group reaches "
        "(undefined on a GPU):" +
        groups);
  }
}

}  // namespace coatnet::cuda
