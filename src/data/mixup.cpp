#include "data/mixup.h"

#include <ATen/ATen.h>

#include <algorithm>
#include <cmath>

#include "data/sampler.h"

namespace coatnet::data {

double keyed_beta(double a, uint64_t key) {
  KeyedRandom s(key);
  double x = s.gamma(a), y = s.gamma(a);
  return x / (x + y);
}

at::Tensor soft_targets(const at::Tensor& targets, int64_t k, double eps) {
  at::Tensor y;
  if (targets.dim() == 1) {
    y = at::zeros({targets.size(0), k}, targets.options().dtype(at::kFloat));
    at::Tensor idx = targets.clamp_min(0).unsqueeze(1);
    y.scatter_(1, idx, 1.0);
    y.masked_fill_((targets < 0).unsqueeze(1), 0.0);  // invalid rows carry no target
  } else {
    y = targets.to(at::kFloat);
  }
  return eps > 0 ? y.mul(1.0 - eps).add_(eps / k) : y;
}

MixInfo draw_mix(const MixOptions& o, int64_t epoch, int64_t step, int64_t h, int64_t w) {
  MixInfo m;
  const bool mixup = o.mixup_alpha > 0, cutmix = o.cutmix_alpha > 0;
  if (!mixup && !cutmix) return m;
  const uint64_t key =
      key_of(o.seed ^ 0x6d6978, static_cast<uint64_t>(epoch), static_cast<uint64_t>(step) << 16);
  KeyedRandom s(key);
  m.mixed = true;
  m.cutmix = cutmix && (!mixup || s.uniform() < o.switch_prob);
  m.lam = keyed_beta(m.cutmix ? o.cutmix_alpha : o.mixup_alpha, key_of(key, 1));
  if (m.cutmix) {
    const double cut = std::sqrt(1.0 - m.lam);
    const auto ch = static_cast<int64_t>(h * cut), cw = static_cast<int64_t>(w * cut);
    const auto cy = static_cast<int64_t>(s.uniform() * h),
               cx = static_cast<int64_t>(s.uniform() * w);
    m.y0 = std::clamp<int64_t>(cy - ch / 2, 0, h);
    m.y1 = std::clamp<int64_t>(cy + ch / 2, 0, h);
    m.x0 = std::clamp<int64_t>(cx - cw / 2, 0, w);
    m.x1 = std::clamp<int64_t>(cx + cw / 2, 0, w);
    m.lam = 1.0 - static_cast<double>((m.y1 - m.y0) * (m.x1 - m.x0)) / (h * w);
  }
  return m;
}

at::Tensor partners_of(const at::Tensor& rows) {
  const int64_t b = rows.size(0);
  // Made on the rows' device: a small index copied from the host would wait for the GPU.
  at::Tensor idx = at::arange(b, rows.options().dtype(at::kLong)).bitwise_xor_(1);
  if (b % 2 == 1) idx.narrow(0, b - 1, 1).fill_(b - 1);
  return rows.index_select(0, idx);
}

void mix_images(at::Tensor& images, const MixInfo& m) {
  if (!m.mixed) return;
  at::NoGradGuard no_grad;
  const at::Tensor partner = partners_of(images);
  if (m.cutmix) {
    images.slice(2, m.y0, m.y1)
        .slice(3, m.x0, m.x1)
        .copy_(partner.slice(2, m.y0, m.y1).slice(3, m.x0, m.x1));
  } else {
    images.mul_(m.lam).add_(partner, 1.0 - m.lam);
  }
}

at::Tensor mix_targets(const at::Tensor& soft, const MixInfo& m) {
  if (!m.mixed) return soft;
  return soft.mul(m.lam).add_(partners_of(soft), 1.0 - m.lam);
}

at::Tensor prepare_batch_composite(const at::Tensor& images, const at::Tensor& scale,
                                   const at::Tensor& bias, const MixInfo& m, at::ScalarType dtype) {
  const int64_t c = images.size(1);
  at::Tensor x = images.to(at::kFloat).mul_(scale.view({1, c, 1, 1})).add_(bias.view({1, c, 1, 1}));
  mix_images(x, m);
  return x.to(dtype).contiguous(at::MemoryFormat::ChannelsLast);
}

at::Tensor mix_batch(at::Tensor& images, const at::Tensor& targets, const MixOptions& o,
                     int64_t epoch, int64_t step, MixInfo* info) {
  const MixInfo m = draw_mix(o, epoch, step, images.size(2), images.size(3));
  mix_images(images, m);
  if (info) *info = m;
  return mix_targets(soft_targets(targets, o.num_classes, o.label_smoothing), m);
}

}  // namespace coatnet::data
