#include "train/zero.h"

#include <stdexcept>

namespace coatnet::train {

void ParamsGather::start() {
  if (!part_.sharded()) return;
  if (work_) throw std::logic_error("ParamsGather::start: the previous all-gather was not waited");
  started_ = clock_type::now();
  complete_ = false;
  work_ = comm_.allgather_inplace_async(values_, part_.shard, "parameter all-gather (ZeRO-1)");
}

bool ParamsGather::poll() {
  if (!work_ || complete_) return true;
  complete_ = work_->done();
  return complete_;
}

void ParamsGather::wait() {
  if (!work_) return;
  window_s_ = seconds_since(started_);
  overlapped_ = complete_;
  const auto t0 = clock_type::now();
  work_->wait();  // at once when complete (NCCL: also orders the compute stream after it)
  work_.reset();
  last_wait_s_ = seconds_since(t0);
}

bool zero_enabled(const std::string& zero, int world, bool checkpoints,
                  const std::string& checkpoint_backend, bool cuda_graph) {
  const bool consolidated = checkpoints && checkpoint_backend == "consolidated";
  // A CUDA graph cannot hold ZeRO-1's host-driven all-gather (check_cuda_graph refuses a 1).
  if (zero == "auto") return world > 1 && !consolidated && !cuda_graph;
  const bool on = zero == "1";
  if (on && world > 1 && consolidated)
    throw std::invalid_argument(
        "optim.zero = " + zero + " shards the optimizer state over the " + std::to_string(world) +
        " ranks, but checkpoint.backend = consolidated writes everything from rank 0: use "
        "checkpoint.backend=sharded (each rank writes the range it owns), or optim.zero=0");
  return on;
}

}  // namespace coatnet::train
