// train.cuda_graph emulated on a CPU, for the tests (COATNET_TEST_CUDA_GRAPH_ON_CPU=1), so that
// CI checks what a graph needs of the step's device work without a GPU.
//
// A CUDA graph replays the kernels its capture launched, with the arguments and memory they had
// then: whatever the host decides inside the captured code — a number passed to an operator, a
// tensor made anew instead of written in place, a branch — is fixed at the capture. So the
// emulation runs the device work at the capture while recording every operator it calls (name,
// scalar arguments, and for each tensor its memory, sizes, strides and dtype), runs it again at
// each "replay", and compares: the first operator that differs is a value the host changed, which
// a real graph would not see, and the emulation stops with both versions of it. Memory made
// inside the work is named by the operator call that returned it (a graph gives it the same
// place at each replay); memory from before it by its address. Host reads of the device
// (`.item()`, `nonzero`), which a capture refuses, stop it too. Only the work's own calls count,
// not those inside an operator (its CPU kernel's, which need not be its GPU kernel's).
//
// Not emulated: the capture itself (what CUDA refuses during one, other than host reads), and
// host state changed inside the work, which a replay would not change again.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

namespace coatnet::train {

class EmulatedGraph {
 public:
  // Runs `work` once, recording its operators. Throws std::runtime_error at a host read.
  void capture(std::function<void()> work, int64_t step);
  bool captured() const { return static_cast<bool>(work_); }
  // Runs it again; throws std::runtime_error naming the first operator that differs from the
  // capture's (or a host read).
  void replay(int64_t step);

 private:
  std::function<void()> work_;
  std::vector<std::string> ops_;  // as captured
  int64_t capture_step_ = -1;
};

// The operators `work` calls on this thread, each as one line (what EmulatedGraph compares),
// and which of them read a result on the host (called by the work itself, not inside another
// operator).
struct RecordedOps {
  std::vector<std::string> ops;
  std::vector<size_t> host_reads;  // indices into ops
};
RecordedOps record_ops(const std::function<void()>& work);

}  // namespace coatnet::train
