#include "train/step.h"

#include <cstdio>
#include <cstdlib>
#include <limits>

#include "cuda/batch_prep.h"
#include "model/layers.h"
#include "train/loss.h"
#include "util/keyed_random.h"

namespace coatnet::train {

DeviceBatch on_device(const data::Batch& batch, const data::MixInfo& m, data::Loader& loader,
                      const data::MixOptions& mix, const at::Device& device, at::ScalarType dtype,
                      bool batch_prep_kernel) {
  DeviceBatch out;
  if (batch_prep_kernel) {
    const data::Loader::Normalisation n = loader.normalisation_on(device);
    out.images = cuda::prepare_batch(batch.images.to(device, /*non_blocking=*/true), n.scale,
                                     n.bias, m, dtype);
  } else {
    out.images = loader.images_on(batch, device);
    data::mix_images(out.images, m);
  }
  // Asynchronous, from pinned memory (data.pin_memory): a step must not wait for the last one.
  out.soft = data::mix_targets(data::soft_targets(batch.targets.to(device, /*non_blocking=*/true),
                                                  mix.num_classes, mix.label_smoothing),
                               m);
  out.valid = batch.valid.to(device, /*non_blocking=*/true);
  return out;
}

ForwardBackward::Waits ForwardBackward::run(int64_t step) {
  Waits w;
  set_fault(step);
  for (int64_t micro = 0; micro < loop_.accum; ++micro) {
    const DeviceBatch in = next_batch(micro == 0, w);
    if (micro == 0) {
      gather_.wait();
      w.comm += gather_.last_wait_s();
      w.gather += gather_.last_wait_s();
    }
    passes(in, /*last=*/micro == loop_.accum - 1, w);
  }
  return w;
}

DeviceBatch ForwardBackward::next_batch(bool first, Waits& w) {
  // The first micro-step's wait for data also drives ZeRO-1's parameter all-gather.
  data::Batch batch = first ? loader_.next([this] { return gather_.poll(); }) : loader_.next();
  epoch = batch.epoch;
  w.data += batch.wait_seconds;
  data_hash_ += sample_hash(batch.indices);
  // Mixup/CutMix keyed by the micro-step: the same on a resume, at any world size.
  const data::MixInfo m =
      data::draw_mix(loop_.mix, batch.epoch, micro_++, batch.images.size(2), batch.images.size(3));
  return on_device(batch, m, loader_, loop_.mix, device_,
                   batch_prep_ ? precision_.compute_dtype() : at::kFloat, batch_prep_);
}

void ForwardBackward::passes(const DeviceBatch& in, bool last, Waits& w) {
  at::Tensor loss;
  {
    auto autocast = precision_.autocast(device_);
    const int64_t rows = in.images.size(0);  // this rank's slice of the global batch
    model::GlobalBatchRows global(loop_.global_batch, rank_ * rows);
    loss = classification_loss(net_.forward(in.images), in.soft, in.valid, loop_.loss);
  }
  if (loss_factor_.defined()) loss = loss * loss_factor_;
  buckets_.begin_backward(/*sync=*/last);
  precision_.scale_loss(loss / static_cast<double>(loop_.accum)).backward();
  buckets_.finish();
  w.comm += buckets_.last_wait_s();
  loss_sum_ += loss.detach().to(at::kDouble) / static_cast<double>(loop_.accum);
}

void ForwardBackward::set_fault(int64_t step) {
  if (loss_factor_.defined())
    loss_factor_.fill_(nan_fault(step) ? std::numeric_limits<double>::quiet_NaN() : 1.0);
}

ForwardBackward::Window ForwardBackward::take_window(dist::Comm& comm, int64_t steps) {
  // On the device: nccl reduces CUDA tensors.
  at::Tensor l = at::cat({loss_sum_.reshape({1}), at::full({1}, data_hash_, loss_sum_.options())});
  comm.allreduce(l, "loss for logging");
  l = l.cpu();
  loss_sum_.zero_();
  data_hash_ = 0;
  return {l[0].item<double>() / comm.size() / static_cast<double>(steps), l[1].item<double>()};
}

double sample_hash(const std::vector<int64_t>& indices) {
  double h = 0;
  for (int64_t i : indices)
    if (i >= 0) h += static_cast<double>(mix64(static_cast<uint64_t>(i)) >> 32);
  return h;
}

bool nan_fault(int64_t step) {
  const char* v = std::getenv("COATNET_FAULT_NAN_STEPS");
  if (!v) return false;
  long long a = 0, b = -1;
  if (std::sscanf(v, "%lld-%lld", &a, &b) != 2) return false;
  return step >= a && step <= b;
}

}  // namespace coatnet::train
