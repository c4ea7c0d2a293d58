#include "model/bn_fold.h"

#include <ATen/ATen.h>
#include <ATen/autocast_mode.h>
#include <c10/core/impl/LocalDispatchKeySet.h>
#include <torch/csrc/autograd/custom_function.h>

#include "model/bn_fold_weights.h"
#include "model/layers.h"
#include "model/macs.h"

namespace coatnet::model {

namespace {

BnFold g_bn_fold = BnFold::kOff;

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

// rows (B, R, C) centred by their mean rounded to their dtype (a constant shift: no gradient),
// and the moments of the centred rows: their mean (near 0) and second moment
// centredᵀ·centred / (B·R) (C×C), float32; and the batch mean itself (no gradient), for the
// running statistics. Outputs: {centred, mean, second, batch_mean}.
//
// Centring matters to the folded product: its weights are rounded to bf16, and on an uncentred
// input that rounding error, and the large bias that cancels the mean, grow with |mean| / std
// (a 10x larger error at 10 std from 0, measured on CPU); and the second moments of a centred
// input lose nothing to cancellation. The products are per sample (B of K = R each, so the GPU
// has B blocks of work rather than one product with K = B·R), with float32 sums, then added.
// Backward is one product: d rows = d centred + centred·(dG + dGᵀ)/n + dmean/n.
struct CentredMoments : public torch::autograd::Function<CentredMoments> {
  static variable_list forward(AutogradContext* ctx, const at::Tensor& rows) {
    const double n = static_cast<double>(rows.size(0) * rows.size(1));
    const at::Tensor batch_mean = rows.sum(at::IntArrayRef{0, 1}, false, at::kFloat).div_(n);
    const at::Tensor shift = batch_mean.to(rows.scalar_type());
    const at::Tensor centred = rows - shift;
    at::Tensor second;
    if (centred.is_cuda() && centred.scalar_type() != at::kFloat) {
      second = at::bmm(centred.transpose(1, 2), centred, at::kFloat).sum(0);
    } else {  // the CPU has no mixed-precision product: float32 throughout
      const at::Tensor r = centred.to(at::kFloat);
      second = at::bmm(r.transpose(1, 2), r).sum(0);
    }
    ctx->save_for_backward({centred});
    ctx->mark_non_differentiable({batch_mean});
    return {centred, batch_mean - shift.to(at::kFloat), second.div_(n), batch_mean};
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const at::Tensor centred = ctx->get_saved_variables()[0];
    const int64_t b = centred.size(0), r = centred.size(1), c = centred.size(2);
    const double n = static_cast<double>(b * r);
    const auto f32 = centred.options().dtype(at::kFloat);
    const at::ScalarType dt = centred.scalar_type();
    const at::Tensor dmean = grads[1].defined() ? grads[1] : at::zeros({c}, f32);
    const at::Tensor dsecond = grads[2].defined() ? grads[2] : at::zeros({c, c}, f32);
    const at::Tensor sym = (dsecond + dsecond.t()).div_(n).to(dt);
    at::Tensor d = at::addmm((dmean / n).to(dt), centred.view({b * r, c}), sym);
    if (grads[0].defined()) d.add_(grads[0].reshape({b * r, c}));
    return {d.view({b, r, c})};
  }
};

// The running statistics, as BatchNorm updates them: the unbiased variance, weighted `momentum`.
// Called without autograd; float32 statistics into float32 buffers (BatchNorm's own dtype).
void update_running(torch::nn::BatchNorm2dImpl& bn, const at::Tensor& mean, const at::Tensor& var,
                    int64_t n) {
  const double m = *bn.options.momentum();
  const double unbias = n > 1 ? static_cast<double>(n) / static_cast<double>(n - 1) : 1.0;
  bn.running_mean.mul_(1 - m).add_(mean, m);
  bn.running_var.mul_(1 - m).add_(var, m * unbias);
  bn.num_batches_tracked.add_(1);
}

// t as float32, without an operator call where it already is (the host's work counts here).
at::Tensor f32(const at::Tensor& t) {
  return t.scalar_type() == at::kFloat ? t : t.to(at::kFloat);
}

// The dtype of the expansion's product: autocast's where it is on, as the convolution's would be.
at::ScalarType product_dtype(const at::Tensor& x) {
  const c10::DeviceType device = x.device().type();
  return at::autocast::is_autocast_enabled(device) ? at::autocast::get_autocast_dtype(device)
                                                   : x.scalar_type();
}

bool foldable(const torch::nn::BatchNorm2dImpl& bn) {
  const auto& o = bn.options;
  return bn.is_training() && o.affine() && o.track_running_stats() && o.momentum().has_value();
}

}  // namespace

void set_bn_fold(BnFold mode) {
  g_bn_fold = mode;
}

BnFold bn_fold() {
  return g_bn_fold;
}

bool takes_bn_fold(const torch::nn::BatchNorm2dImpl& bn0, const torch::nn::Conv2dImpl& conv,
                   const torch::nn::BatchNorm2dImpl& bn1, const at::Tensor& x) {
  // Not in float16: the folded weights carry both BatchNorms' scales (up to 1/√ε each), which
  // can pass float16's largest value where the composite's separate steps would not.
  const bool asked = g_bn_fold == BnFold::kEvery || (g_bn_fold == BnFold::kWide && x.dim() == 4 &&
                                                     conv.weight.size(0) > 4 * x.size(1));
  return asked && foldable(bn0) && foldable(bn1) && !batch_norm_overridden() &&
         is_pointwise(conv, x) && x.is_contiguous(at::MemoryFormat::ChannelsLast) &&
         x.numel() > x.size(1) && product_dtype(x) != at::kHalf;
}

at::Tensor bn_conv_bn(torch::nn::BatchNorm2dImpl& bn0, torch::nn::Conv2dImpl& conv,
                      torch::nn::BatchNorm2dImpl& bn1, const at::Tensor& x) {
  const at::ScalarType dt = product_dtype(x);
  // The folding arithmetic is on C-sized float32 tensors and must stay float32: below autocast,
  // which would run its matrix products in bf16.
  c10::impl::ExcludeDispatchKeyGuard no_autocast(c10::autocast_dispatch_keyset);
  const int64_t b = x.size(0), c = x.size(1), h = x.size(2), w = x.size(3), n = b * h * w;
  const int64_t out = conv.weight.size(0);
  // Channels-last: the (b, h·w, c) rows are x's memory as it is; centred first (CentredMoments).
  const at::Tensor rows = x.to(dt).permute({0, 2, 3, 1}).reshape({b, h * w, c});
  const variable_list moments = CentredMoments::apply(rows);
  const at::Tensor &centred = moments[0], &batch_mean = moments[3];
  FoldParameters p;
  p.weight = f32(conv.weight).view({out, c});
  if (conv.bias.defined()) p.conv_bias = f32(conv.bias);
  p.gamma0 = f32(bn0.weight);
  p.beta0 = f32(bn0.bias);
  p.gamma1 = f32(bn1.weight);
  p.beta1 = f32(bn1.bias);
  p.eps0 = bn0.options.eps();
  p.eps1 = bn1.options.eps();
  const FoldedWeights f = fold_weights(moments[2], moments[1], p, dt);
  {
    // The pre-norm's output has mean β0 exactly, so the expansion's has W·β0 + its bias.
    at::NoGradGuard no_grad;
    const at::Tensor mean1 = p.conv_bias.defined() ? at::addmv(p.conv_bias, p.weight, p.beta0)
                                                   : at::mv(p.weight, p.beta0);
    update_running(bn0, batch_mean, f.var0, n);
    update_running(bn1, mean1, f.var1, n);
  }
  const at::Tensor y = at::addmm(f.bias, centred.view({n, c}), f.weight.t());
  const at::Tensor z = y.view({b, h, w, out}).permute({0, 3, 1, 2});
  count_conv(conv.weight, z);
  return z;
}

}  // namespace coatnet::model
