#include "train/loss.h"

#include <ATen/ATen.h>

namespace coatnet::train {

at::Tensor classification_loss(const at::Tensor& logits, const at::Tensor& soft_targets,
                               const at::Tensor& valid, LossType type) {
  at::Tensor per_row;
  if (type == LossType::SoftmaxCE) {
    per_row = -(soft_targets * at::log_softmax(logits, 1)).sum(1);
  } else {
    per_row =
        at::binary_cross_entropy_with_logits(logits, soft_targets, {}, {}, at::Reduction::None)
            .mean(1);
  }
  at::Tensor mask = valid.to(per_row.scalar_type());
  return (per_row * mask).sum() / mask.sum().clamp_min(1);
}

}  // namespace coatnet::train
