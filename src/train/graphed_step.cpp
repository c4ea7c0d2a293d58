#include "train/graphed_step.h"

#include <ATen/ATen.h>

#include <cstdlib>
#include <stdexcept>
#include <string>

#include "checkpoint/checkpointer.h"
#include "config/config.h"
#include "cuda/batch_prep.h"
#include "cuda/device_memory.h"
#include "train/run_parts.h"

namespace coatnet::train {

at::Tensor update_weights(RunParts& run, SkippedSteps& skips,
                          const std::function<void(const at::Tensor& found_inf)>& optimizer_step) {
  // Gradients are identical on every rank now, so every rank takes the same decision, and
  // takes it on the device: a non-finite gradient (fp16's check, or the norm) sets found_inf,
  // and the optimizer, the EMA and the loss scale read it there.
  // Under ZeRO-1 each rank holds the reduced gradients of its own range (run.grads): the
  // non-finite check is local, but the norm, and so found_inf, is summed over the ranges.
  at::Tensor& found_inf = skips.begin_step();
  at::Tensor grads = run.grads;
  run.precision->unscale(grads, found_inf);
  at::Tensor norm = clip_grad_norm(grads, run.loop.clip, found_inf,
                                   run.part.sharded() ? run.comm.get() : nullptr);
  run.precision->update(found_inf);
  optimizer_step(found_inf);
  if (run.ema) run.ema->update(found_inf);
  skips.end_step();
  return norm;
}

namespace {
bool emulated_on_cpu() {
  const char* v = std::getenv("COATNET_TEST_CUDA_GRAPH_ON_CPU");
  return v && std::string(v) == "1";
}
}  // namespace

void resolve_cuda_graph(config::Config& cfg, const at::Device& device, int world_size) {
  if (cfg.get_string("train.cuda_graph") != "auto") return;
  const bool on = device.is_cuda() && cuda::kernels_built() && world_size == 1 &&
                  cfg.get_int("optim.accum_steps") == 1;
  cfg.set(std::string("train.cuda_graph=") + (on ? "true" : "false"));
}

bool cuda_graph_on(const config::Config& cfg) {
  return cfg.get_string("train.cuda_graph") == "true";
}

void check_cuda_graph(const config::Config& cfg, const at::Device& device, int world_size) {
  if (!cuda_graph_on(cfg)) return;
  const std::string hint = "; or set train.cuda_graph=false";
  if (!device.is_cuda() && !emulated_on_cpu())
    throw std::invalid_argument(
        "train.cuda_graph = true needs a CUDA device, and this rank runs on " + device.str() +
        " (train.device = " + cfg.get_string("train.device") + ")" + hint);
  if (const int64_t accum = cfg.get_int("optim.accum_steps"); accum != 1)
    throw std::invalid_argument(
        "train.cuda_graph = true captures one micro-batch per optimizer step, and "
        "optim.accum_steps = " +
        std::to_string(accum) + ": set optim.accum_steps=1 (raise data.batch_size instead)" + hint);
  if (world_size > 1 && cfg.get_string("optim.zero") == "1")
    throw std::invalid_argument(
        "train.cuda_graph = true with optim.zero = 1 at " + std::to_string(world_size) +
        " ranks: ZeRO-1's parameter all-gather is overlapped from the host, outside any graph; "
        "set optim.zero=0" +
        hint);
  // The CPU's emulation reruns the step's host calls at each replay, MPI's included: there MPI
  // stands in for nccl, so that CI runs the graphed step's several-rank path too.
  if (world_size > 1 && cfg.get_string("dist.backend") == "mpi" && device.is_cuda())
    throw std::invalid_argument(
        "train.cuda_graph = true with dist.backend = mpi at " + std::to_string(world_size) +
        " ranks: MPI's collectives are host calls, which a CUDA graph cannot hold; use "
        "dist.backend=nccl (or auto)" +
        hint);
}

GraphedStep::GraphedStep(RunParts& run, ForwardBackward& passes, SkippedSteps& skips,
                         int64_t first_step)
    : run_(run), passes_(passes), skips_(skips), first_step_(first_step) {
  if (run.device.is_cuda()) graph_ = std::make_unique<cuda::StepGraph>(run.device);
  // On the graph's stream, now current: autograd would otherwise order every gradient after the
  // legacy default stream, which a capture refuses (dist/grad_buckets.h). Also on the CPU's
  // emulation, so that CI runs this in the trainer's order (nothing may hold them yet).
  run.buckets.remake_accumulators();
  fence_ = at::zeros({1}, at::TensorOptions().dtype(at::kFloat).device(run.device));
}

void GraphedStep::device_work() {
  run_.buckets.zero();
  ForwardBackward::Waits host_only;  // timings of the capture, not of a step
  passes_.passes(in_, /*last=*/true, host_only);
  grad_norm_ = update_weights(run_, skips_,
                              [&](const at::Tensor& found_inf) { run_.optimizer.step(found_inf); });
}

ForwardBackward::Waits GraphedStep::run(int64_t step, double lr, checkpoint::Checkpointer* ckpt) {
  ForwardBackward::Waits w;
  const DeviceBatch batch = passes_.next_batch(/*first=*/true, w);
  if (!in_.images.defined()) {
    // clone() keeps each tensor's memory format: later copies land in the same layout.
    in_ = {batch.images.clone(), batch.soft.clone(), batch.valid.clone()};
  } else {
    in_.images.copy_(batch.images);
    in_.soft.copy_(batch.soft);
    in_.valid.copy_(batch.valid);
  }
  run_.optimizer.set_learning_rate(lr);  // the scalar the graph's AdamW reads
  passes_.set_fault(step);
  // The replay updates the weights: a checkpoint's snapshot of them must be taken first.
  if (ckpt) ckpt->before_update();
  if (graph_) {
    if (!graph_->captured()) {
      graph_->capture([this] { device_work(); });
      held_bytes_ = cuda::take_device_peak(run_.device).peak_bytes;
    }
    graph_->replay();
  } else if (!emulated_.captured()) {
    emulated_.capture([this] { device_work(); }, step);
  } else {
    emulated_.replay(step);
  }
  // The replay's collectives have no deadline of their own (nccl keeps deadlines for the
  // collectives it launches, not for a graph's): one element all-reduced after the replay
  // completes only when every rank's replay did, and nccl's watchdog ends the job naming this
  // step when it does not in dist.timeout_s. The next step's work waits for it on the device
  // (no host wait), so that it never runs beside the next replay's collectives on the same
  // communicator.
  if (run_.comm->size() > 1)
    run_.comm->allreduce(fence_,
                         "the CUDA graph of step " + std::to_string(step) + " (its collectives)");
  return w;
}

}  // namespace coatnet::train
