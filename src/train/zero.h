// ZeRO-1 (optim.zero 1; Rajbhandari et al., "ZeRO: Memory Optimizations Toward Training
// Trillion Parameter Models", 2020, stage 1): the optimizer state is split over the ranks
// instead of repeated on each. Rank r owns one contiguous range of the flat buffers
// (FlatParams): it receives the gradient sum of that range only (each bucket reduce-scattered,
// dist/grad_buckets.h), keeps AdamW's moments and the EMA of that range only, updates that range
// of the fp32 parameters, and then every rank's updated range is all-gathered into every rank's
// parameters. Per rank, 20 bytes per parameter become 8 + 16/W (+ 4/W for the owned gradients).
//
//   FlatParams flat(*net, world);               // padded to world equal shards
//   dist::Partition part = dist::Partition::even(flat.numel(), rank, world);
//   ... reduce-scatter, clip by the global norm, AdamW and the EMA on part's range ...
//   ParamsGather gather(flat.values, part, comm);
//   gather.start();                             // after the update
//   gather.wait();                              // before anything reads the parameters
#pragma once

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <memory>
#include <string>

#include "dist/comm.h"
#include "dist/partition.h"
#include "util/clock.h"

namespace coatnet::train {

using dist::Partition;

// The all-gather of every rank's updated range of the parameters, started after the update and
// waited for before the next forward (or anything else that reads the parameters: evaluation, a
// checkpoint, the final weights). Between the two the rank logs, polls checkpoints and waits
// for its next batch, polling the gather meanwhile, so the exchange overlaps them. Does nothing
// unsharded.
class ParamsGather {
 public:
  ParamsGather(at::Tensor values, Partition part, dist::Comm& comm)
      : values_(std::move(values)), part_(part), comm_(comm) {}
  void start();
  // Tests it (MPI progresses only inside MPI calls: the loader polls it while the rank waits for
  // its next batch); true once it is complete, or when none is in flight.
  bool poll();
  void wait();  // on NCCL: orders the compute stream after it; no host wait
  // The last gather: seconds from start() to wait() (the time it could overlap), blocked in
  // wait(), and whether it was seen complete before wait() (overlapped).
  double window_s() const { return window_s_; }
  double last_wait_s() const { return last_wait_s_; }
  bool overlapped() const { return overlapped_; }

 private:
  at::Tensor values_;
  Partition part_;
  dist::Comm& comm_;
  std::unique_ptr<dist::Work> work_;
  clock_type::time_point started_;
  double window_s_ = 0, last_wait_s_ = 0;
  bool complete_ = false, overlapped_ = false;
};

// optim.zero as this run uses it: "auto" is 1 when there is more than one rank, unless the
// checkpoints are consolidated (rank 0 writes everything: it would have to gather the state) or
// the step is a CUDA graph (train.cuda_graph). "1" with consolidated checkpoints is refused,
// naming the keys.
bool zero_enabled(const std::string& zero, int world, bool checkpoints,
                  const std::string& checkpoint_backend, bool cuda_graph);

}  // namespace coatnet::train
