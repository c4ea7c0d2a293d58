// Profiles a window of training steps with PyTorch's profiler (Kineto; CUPTI on a GPU), as
// timm users do with torch.profiler: train.profile_start / train.profile_steps. Rank 0 writes
// into RUN_DIR/profile/: trace.json (chrome://tracing, Perfetto; with each operator's input
// shapes and strides, which tests/bench/trace_ops.py reads) and summary.json, which answers
// the two questions that decide what to speed up: how much of a step's wall time the GPU is busy
// (the rest is the host launching work, or waiting), and which kernels take the busy time.
#pragma once

#include <cstdint>
#include <functional>
#include <string>

#include "util/json.h"

namespace coatnet::train {

class StepProfiler {
 public:
  // start: the first profiled step (0-based; later than the first steps, which warm up cuDNN
  // and the allocator); steps: how many (0 = off). cuda: also record the GPU's kernels.
  StepProfiler(int64_t start, int64_t steps, bool cuda, std::string dir,
               std::function<void(const std::string&)> say);
  ~StepProfiler();
  StepProfiler(const StepProfiler&) = delete;
  StepProfiler& operator=(const StepProfiler&) = delete;

  void before_step(int64_t step);  // starts recording at `start`
  void after_step(int64_t step);   // stops after the last profiled step and writes the files

 private:
  int64_t start_, steps_;
  bool cuda_, active_ = false;
  std::string dir_;
  std::function<void(const std::string&)> say_;
  double t0_s_ = 0;
};

// One GPU kernel's occurrence: name, start and end (ns, one clock).
struct KernelSpan {
  std::string name;
  uint64_t start_ns, end_ns;
};

// The summary of a profiled window from its kernels: per step the wall time, the time at least
// one kernel ran (overlapping kernels counted once) and that as a share, then kernels grouped by
// name, longest total first (the `top` first), each with its calls, total ms per step and share
// of the busy time.
json::Value profile_summary(std::vector<KernelSpan> kernels, int64_t steps, double wall_s,
                            std::size_t top = 30);

// Runs `work` under PyTorch's profiler with memory events and returns the most bytes it had
// allocated at once on the CPU beyond what was allocated before it (train::plan_memory).
// Kineto's start/stop log lines are kept out of stderr meanwhile.
int64_t peak_cpu_bytes(const std::function<void()>& work);

}  // namespace coatnet::train
