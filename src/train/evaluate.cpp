#include "train/evaluate.h"

#include <ATen/ATen.h>

#include <algorithm>
#include <chrono>

#include "data/loader.h"
#include "dist/comm.h"
#include "model/coatnet.h"

namespace coatnet::train {

EvalResult evaluate(model::CoAtNetImpl& net, data::Loader& loader, dist::Comm& comm,
                    const at::Device& device) {
  const auto t0 = std::chrono::steady_clock::now();
  at::NoGradGuard no_grad;
  const bool was_training = net.is_training();
  net.eval();
  loader.restore(data::SamplerState{0, 0});
  // Sums over this rank's valid rows: correct@1, correct@5, loss, rows, corrupt records.
  // Kept on the device: one host sync per evaluation, not five per batch.
  at::Tensor sums = at::zeros({4}, at::TensorOptions().dtype(at::kDouble).device(device));
  int64_t corrupt = 0;
  for (int64_t i = 0; i < loader.batches_per_epoch(); ++i) {
    data::Batch batch = loader.next();
    at::Tensor valid = batch.valid.to(device, /*non_blocking=*/true);
    at::Tensor logits = net.forward(loader.images_on(batch, device)).to(at::kFloat);
    const int64_t k = std::min<int64_t>(5, logits.size(1));
    at::Tensor top = std::get<1>(logits.topk(k, 1));  // (B, k)
    at::Tensor targets = batch.targets.to(device, /*non_blocking=*/true);
    at::Tensor hit;  // (B, k): is the j-th best class a true label?
    at::Tensor per_row;
    if (targets.dim() == 1) {
      hit = top.eq(targets.clamp_min(0).unsqueeze(1));
      per_row = at::cross_entropy_loss(logits, targets.clamp_min(0), {}, at::Reduction::None);
    } else {
      hit = targets.gather(1, top).gt(0);
      per_row = at::binary_cross_entropy_with_logits(logits, targets, {}, {}, at::Reduction::None)
                    .mean(1);
    }
    at::Tensor v = valid.to(at::kDouble);
    sums += at::stack({(hit.narrow(1, 0, 1).any(1).to(at::kDouble) * v).sum(),
                       (hit.any(1).to(at::kDouble) * v).sum(), (per_row.to(at::kDouble) * v).sum(),
                       v.sum()});
    corrupt += batch.corrupt;
  }
  // On the model's device: the nccl backend reduces CUDA tensors only.
  at::Tensor total = at::cat({sums, at::full({1}, static_cast<double>(corrupt), sums.options())});
  comm.allreduce(total, "evaluation counts");
  total = total.cpu();
  auto t = total.accessor<double, 1>();
  EvalResult r;
  r.samples = static_cast<int64_t>(t[3]);
  r.corrupt = static_cast<int64_t>(t[4]);
  const double n = std::max(1.0, t[3]);
  r.top1 = t[0] / n;
  r.top5 = t[1] / n;
  r.loss = t[2] / n;
  r.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  if (was_training) net.train();
  return r;
}

}  // namespace coatnet::train
