// The optimizer step's device work, and train.cuda_graph: that work captured once as a CUDA
// graph and replayed every step after a few eager ones, as torch.cuda.graph does for a
// PyTorch step. The host then launches one graph per step instead of ~1,400 kernels, so a step
// whose kernels are short no longer waits for the CPU to launch them.
//
//   GraphedStep graphed(run, passes, skips, start_step);  // this thread now uses its stream
//   for (step ...) {
//     at::manual_seed(...);                                // the replay's random draws
//     if (graphed.takes(step)) { waits = graphed.run(step, lr, ckpt); norm = graphed.grad_norm(); }
//     else { ...passes.run(step); norm = update_weights(run, skips, ...); }
//   }
//
// The graph holds what runs on the device alone: zeroing the gradients, forward, backward with
// the bucketed all-reduce (NCCL kernels are captured too), the non-finite check, clipping, the
// loss scale, AdamW (the learning rate read from its device scalar), the EMA and the skipped-step
// counts. The host keeps the rest, before each replay: the next batch (loaded, mixed, copied
// into the tensors the graph reads), the learning rate, the tests' NaN fault, a checkpoint's
// snapshot (taken before the replay updates the weights) and the seed.
// Applies to one rank per GPU with NCCL (or alone), optim.accum_steps 1, without ZeRO-1:
// check_cuda_graph() refuses the rest before anything is built.
#pragma once

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <functional>
#include <memory>

#include "cuda/step_graph.h"
#include "train/graph_emulation.h"
#include "train/step.h"

namespace coatnet::checkpoint {
class Checkpointer;
}

namespace coatnet::train {

class RunParts;

// What follows the passes, on the device only (no host read): unscale and non-finite check
// (the precision plugin), clipping (the global norm), the loss scale's update, the optimizer
// step (`optimizer_step`, given found_inf), the EMA and the skipped-step counts. Returns the
// gradient norm before clipping, a 0-dim tensor on the device.
at::Tensor update_weights(RunParts& run, SkippedSteps& skips,
                          const std::function<void(const at::Tensor& found_inf)>& optimizer_step);

// train.cuda_graph as this run uses it: auto becomes true on a GPU at one rank, with one
// micro-batch per step and this build's CUDA code (cuda/step_graph.h), where it measured faster
// (docs/GPU.md); false elsewhere: on a CPU, and at several ranks, where no graph has run yet.
void resolve_cuda_graph(config::Config& cfg, const at::Device& device, int world_size);
// Whether a resolved config replays the step as a CUDA graph.
bool cuda_graph_on(const config::Config& cfg);

// Refuses train.cuda_graph where a graph cannot hold the step: not a CUDA device, several
// micro-batches per step, ZeRO-1 (its all-gather is driven from the host), or MPI's
// collectives (host calls) across ranks. std::invalid_argument naming the keys and the fix.
// A CPU passes under COATNET_TEST_CUDA_GRAPH_ON_CPU=1 (the tests' emulation, below).
void check_cuda_graph(const config::Config& cfg, const at::Device& device, int world_size);

class GraphedStep {
 public:
  // Eager steps before the capture: cuDNN's benchmark search, the autograd engine's threads,
  // the precision plugin's state and the allocator settle in them, as torch.cuda.graph's
  // documentation asks (warm-up on the side stream).
  static constexpr int64_t kEagerSteps = 3;

  GraphedStep(RunParts& run, ForwardBackward& passes, SkippedSteps& skips, int64_t first_step);
  bool takes(int64_t step) const { return step >= first_step_ + kEagerSteps; }
  bool captures(int64_t step) const { return step == first_step_ + kEagerSteps; }
  // Optimizer step `step` at learning rate `lr` from the graph (captured at the first call).
  ForwardBackward::Waits run(int64_t step, double lr, checkpoint::Checkpointer* ckpt);
  const at::Tensor& grad_norm() const { return grad_norm_; }  // of the last replay
  // The device memory the graph keeps for its replays (its pool holds what the captured step
  // allocated, though no tensor does between replays): the allocator's peak over the steps up
  // to the capture. -1 before the capture, and on a CPU.
  int64_t held_bytes() const { return held_bytes_; }

 private:
  void device_work();  // what the graph holds

  RunParts& run_;
  ForwardBackward& passes_;
  SkippedSteps& skips_;
  std::unique_ptr<cuda::StepGraph> graph_;  // on a GPU
  // On a CPU, for the tests only (COATNET_TEST_CUDA_GRAPH_ON_CPU=1): the device work run again at
  // each "replay", and stopped where it does not call what the capture called
  // (train/graph_emulation.h): CI checks what a graph needs of the step without a GPU.
  EmulatedGraph emulated_;
  int64_t first_step_;
  DeviceBatch in_;        // the graph's inputs: each step's batch is copied into them
  at::Tensor grad_norm_;  // the graph's output
  at::Tensor fence_;      // all-reduced after each replay at several ranks: its deadline
  int64_t held_bytes_ = -1;
};

}  // namespace coatnet::train
