// A CUDA thread block's threads run on the CPU as threads of their own, one at a time in a fixed
// order, each until its next barrier (__syncthreads, __syncwarp): how the tests find a barrier
// missing from the shared thread bodies of a kernel (relpos_attention_blocks.h), which the serial
// emulation cannot (it runs each phase of every warp and lane to its end before the next, as if
// a barrier stood after every loop).
//
// Run once in ascending and once in descending order, a thread that reads what another writes
// without a barrier between them reads it before it is written in one of the two (shared memory
// starts as NaN bytes). A barrier that not every thread of its group reaches (a divergent
// __syncthreads, undefined on a GPU) ends the run with an error naming it.
//
//   BlockThreads block(128, BlockThreads::Order::kDescending);
//   block.run([&](int tid) { body(tid); });   // body calls block.barrier(tid, first, count)
#pragma once

#include <condition_variable>
#include <exception>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <utility>
#include <vector>

namespace coatnet::cuda {

class BlockThreads {
 public:
  enum class Order { kAscending, kDescending };
  BlockThreads(int threads, Order order);
  // Runs body(tid) for every tid of the block; returns when all have ended. Rethrows the first
  // exception a body threw, or the barrier that could not complete.
  void run(const std::function<void(int tid)>& body);
  // Waits until the threads first .. first + count - 1 have all arrived (tid among them).
  void barrier(int tid, int first, int count);

 private:
  void wait_turn(std::unique_lock<std::mutex>& lock, int tid);
  void pass_turn();  // to the next runnable thread in the order, from the current one

  int threads_;
  std::vector<int> order_;  // tids in the order they take turns
  std::mutex mu_;
  std::vector<std::unique_ptr<std::condition_variable>> wake_;
  std::vector<bool> blocked_, ended_;
  std::map<std::pair<int, int>, std::vector<int>> arrived_;  // per barrier group
  int position_ = 0;                                         // in order_: whose turn it is
  bool stuck_ = false;
  std::exception_ptr error_;
};

}  // namespace coatnet::cuda
