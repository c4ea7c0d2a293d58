// A whole training step as one CUDA graph (train.cuda_graph): captured once, then replayed, so
// that the step's ~1,400 kernels cost one launch from the host instead of one each — what
// torch.cuda.graph does for a PyTorch step. Built from LibTorch's at::cuda::CUDAGraph with the
// CUDA kernels of src/cuda (a build without nvcc refuses it, naming why).
//
//   cuda::StepGraph graph(device);  // from here on this thread runs on the graph's stream
//   ...eager steps first (cuDNN's benchmark search, the allocator, lazy state settle)...
//   copy the step's inputs into the tensors the graph reads, outside the graph;
//   if (!graph.captured()) graph.capture([&] { step(); });  // records; nothing runs
//   graph.replay();                                           // runs the recorded step
//
// What the graph reads must stay where it was at capture (inputs are copied into its tensors,
// the learning rate is a device scalar), and what the host decides inside `step` is fixed at
// capture (train/graphed_step.h keeps those decisions out). Random draws (stochastic depth) are
// not fixed: a replay reads the CUDA generator's seed and offset as they are then, so
// at::manual_seed before each replay gives the draws an eager step would make.
#pragma once

#include <c10/core/Device.h>

#include <functional>
#include <memory>

namespace coatnet::cuda {

class StepGraph {
 public:
  // Makes a stream of its own current on this thread for `device` until destroyed: a graph
  // cannot be captured on the default stream. The stream is a blocking one, so work that other
  // threads put on the default stream (a checkpoint's background copy) stays ordered with it
  // as before. Throws when this build has no CUDA graphs.
  explicit StepGraph(const at::Device& device);
  ~StepGraph();
  StepGraph(const StepGraph&) = delete;
  StepGraph& operator=(const StepGraph&) = delete;

  // Records what `step` launches, after returning the cached memory of the eager steps to the
  // device (the graph keeps a pool of its own). Other threads may go on using CUDA meanwhile
  // (thread-local capture). Throws with CUDA's reason when something in `step` cannot be
  // captured (a host read, a synchronisation).
  void capture(const std::function<void()>& step);
  bool captured() const;
  void replay();  // on this stream; the host does not wait

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace coatnet::cuda
