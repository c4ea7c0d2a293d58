// Gradient buckets (docs/ARCHITECTURE.md "One training step"): every parameter's .grad is a view
// into one flat gradient buffer (no copies), cut into buckets of contiguous ranges — the first
// small (~1 MiB) so communication starts early, the rest ~25 MiB. The buffer is laid out in the
// order backward produces gradients (the reverse of registration order), and a hook on each
// parameter's gradient accumulator counts it ready; a bucket's all-reduce starts as soon as all of
// its gradients are ready and the buckets before it have started (the same order on every rank), so
// it overlaps the rest of backward.
//
//   GradBuckets buckets(params, flat_grads, offsets, comm, 1 << 20, 25 << 20);
//   buckets.zero();
//   buckets.begin_backward(/*sync=*/true);  // false on non-final accumulation micro-steps
//   loss.backward();
//   buckets.finish();                       // grads now hold the mean over ranks
//
// ZeRO-1 (train/zero.h): after scatter_into(owned, partition) each bucket is reduce-scattered
// instead: each rank receives the mean over ranks of the bucket's part inside the range it owns,
// in `owned` (partition.shard elements; zero() zeroes it too, so it is zero where no bucket
// reaches), and the flat buffer keeps
// this rank's own gradients.
#pragma once

#include <ATen/core/Tensor.h>

#include <chrono>
#include <cstdint>
#include <memory>
#include <vector>

#include "dist/comm.h"
#include "dist/partition.h"

namespace torch::autograd {
struct Node;
}

namespace coatnet::dist {

struct Bucket {
  int64_t begin = 0, end = 0;            // element range of the flat gradient buffer
  std::vector<size_t> params;            // indices into the parameter list
  size_t pending = 0;                    // gradients not yet ready in this backward
  double ready_s = -1, launched_s = -1;  // seconds since begin_backward()
  double done_s = -1;  // when it was seen complete: during backward (polled), or in finish()
  std::unique_ptr<Work> work;
};

class GradBuckets {
 public:
  // params[i].grad becomes flat_grads[offsets[i], offsets[i] + numel). Buckets follow the
  // order of `params`, which should be the order backward produces their gradients.
  GradBuckets(std::vector<at::Tensor> params, at::Tensor flat_grads, std::vector<int64_t> offsets,
              Comm& comm, int64_t first_bucket_bytes, int64_t bucket_bytes);
  ~GradBuckets();

  void scatter_into(at::Tensor owned, Partition partition);
  // Makes every parameter's gradient accumulator (with its hook) anew, on the stream current
  // now. Autograd orders each gradient after the stream that was current when its
  // AccumulateGrad node was made; made before a CUDA graph's stream became current, that is the
  // legacy default stream, and capture then fails ("operation would make the legacy stream
  // depend on a capturing blocking stream", on an H100). Throws, naming the parameter, while
  // something else (a step's loss or graph) still holds an accumulator.
  void remake_accumulators();
  void zero();  // zero every gradient (one memset of the flat buffer, and of `owned`)
  void begin_backward(bool sync);
  void finish();  // launches what is left, waits, divides by the world size

  const std::vector<Bucket>& buckets() const { return buckets_; }
  double backward_end_s() const { return backward_end_s_; }  // when finish() was entered
  double last_wait_s() const { return last_wait_s_; }        // time blocked in the last finish()

  // Called by the gradient-accumulator hooks.
  void mark_ready(size_t param_index);

 private:
  double since_begin() const;
  void launch_ready();
  // The parameter's gradient accumulator with a ReadyHook on it.
  std::shared_ptr<torch::autograd::Node> hooked_accumulator(size_t param_index);
  void poll_in_flight();

  std::vector<at::Tensor> params_;
  at::Tensor flat_;
  std::vector<size_t> bucket_of_;  // param index -> bucket index
  std::vector<Bucket> buckets_;
  std::vector<std::shared_ptr<torch::autograd::Node>> accumulators_;  // keeps the hooks alive
  Comm& comm_;
  at::Tensor owned_;  // ZeRO-1: this rank's range of the reduced gradients (else undefined)
  Partition part_;
  bool sync_ = true;
  size_t next_launch_ = 0;
  size_t first_in_flight_ = 0;  // buckets before it were seen complete
  std::chrono::steady_clock::time_point t0_;
  double backward_end_s_ = 0, last_wait_s_ = 0;
};

}  // namespace coatnet::dist
