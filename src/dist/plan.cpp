#include "dist/plan.h"

#include <algorithm>
#include <stdexcept>

namespace coatnet::dist {

double ring_allreduce_s(double bytes, int ranks, double gbps, double latency_s) {
  if (ranks <= 1) return 0;
  const double n = ranks;
  return 2 * (n - 1) * latency_s + 2 * (n - 1) / n * bytes * 8 / (gbps * 1e9);
}

std::vector<double> bucket_sizes(const StepModel& m) {
  if (m.bucket_bytes <= 0 || m.first_bucket_bytes <= 0)
    throw std::invalid_argument("bucket sizes must be positive");
  std::vector<double> out;
  double left = m.grad_bytes;
  for (double size = m.first_bucket_bytes; left > 0; size = m.bucket_bytes) {
    out.push_back(std::min(size, left));
    left -= out.back();
  }
  return out;
}

PlanPoint predict(const StepModel& m, int gpus) {
  if (gpus < 1) throw std::invalid_argument("gpus must be at least 1");
  PlanPoint p;
  p.gpus = gpus;
  p.nodes = (gpus + m.gpus_per_node - 1) / m.gpus_per_node;
  // A ring is as fast as its slowest link: the network once the job spans nodes.
  const double gbps = p.nodes > 1 ? m.link_gbps : m.node_gbps;
  const double backward_s = m.compute_s * m.backward_share;
  const double backward_start = m.compute_s - backward_s;  // the update is small: left in
  double produced = 0, done = backward_start;
  for (double b : bucket_sizes(m)) {
    produced += b;
    const double ready = backward_start + backward_s * produced / m.grad_bytes;
    const double t = ring_allreduce_s(b, gpus, gbps, m.latency_s);
    p.allreduce_s += t;
    done = std::max(done, ready) + t;
  }
  p.exposed_s = std::max(0.0, done - (backward_start + backward_s));
  p.step_s = m.compute_s + p.exposed_s;
  p.comm_share = p.exposed_s / p.step_s;
  p.efficiency = m.compute_s / p.step_s;
  return p;
}

}  // namespace coatnet::dist
