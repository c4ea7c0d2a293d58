// The α–β model of a data-parallel step (coatnet plan): gradient buckets all-reduced by a ring
// while backward goes on. Bucket k becomes ready when backward has produced its share of the
// gradients (gradients come out at an even rate over backward, the last layers' first); its
// ring all-reduce over N ranks takes 2(N−1)·α + 2(N−1)/N · bytes / bandwidth and starts when
// both it is ready and the previous bucket is done. What is left after backward ends is the
// exposed communication the step waits for.
//
//   StepModel m{.grad_bytes = 4 * params, .compute_s = 0.1};
//   PlanPoint p = predict(m, /*gpus=*/64);   // p.step_s, p.comm_share, p.efficiency
#pragma once

#include <cstdint>
#include <vector>

namespace coatnet::dist {

struct StepModel {
  double grad_bytes = 0;            // bytes all-reduced per step (fp32 gradients: 4 × params)
  double compute_s = 0;             // forward + backward + update of one step, no communication
  double backward_share = 2.0 / 3;  // of compute_s: backward costs about twice the forward
  double first_bucket_bytes = 1 << 20, bucket_bytes = 25 << 20;  // dist.first_bucket_mb, bucket_mb
  double link_gbps = 100;   // network bandwidth per GPU between nodes (Gbit/s)
  double node_gbps = 2400;  // between the GPUs of one node (NVLink-class)
  double latency_s = 5e-6;  // α: per message and hop
  int gpus_per_node = 8;
};

struct PlanPoint {
  int gpus = 0, nodes = 0;
  double allreduce_s = 0;  // every bucket's all-reduce back to back (no overlap)
  double exposed_s = 0;    // communication still running when backward ends
  double step_s = 0, comm_share = 0, efficiency = 0;
};

// Ring all-reduce of `bytes` over `ranks` at `gbps` with per-hop latency `latency_s`.
double ring_allreduce_s(double bytes, int ranks, double gbps, double latency_s);
// The bucket sizes, in the order backward fills them.
std::vector<double> bucket_sizes(const StepModel& m);
PlanPoint predict(const StepModel& m, int gpus);

}  // namespace coatnet::dist
