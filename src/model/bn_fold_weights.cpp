#include "model/bn_fold_weights.h"

#include <ATen/ATen.h>
#include <torch/csrc/autograd/custom_function.h>

namespace coatnet::model {

namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

// Inputs: second, mean, W, γ0, β0, γ1, β1, conv bias (or an empty tensor); ε0, ε1, dtype. β0 and
// the conv bias only receive their gradient of 0.
// Outputs: folded weight, bias (in dtype), var0, var1 (float32, no gradient).
struct Fold : public torch::autograd::Function<Fold> {
  static variable_list forward(AutogradContext* ctx, const at::Tensor& second,
                               const at::Tensor& mean, const at::Tensor& w, const at::Tensor& g0,
                               const at::Tensor& /*b0*/, const at::Tensor& g1, const at::Tensor& b1,
                               const at::Tensor& conv_bias, double eps0, double eps1,
                               int64_t dtype) {
    const at::Tensor cov = at::addr(second, mean, mean, 1, -1);
    const at::Tensor var0 = cov.diagonal().clamp_min(0);
    const at::Tensor s0 = (var0 + eps0).rsqrt_();
    const at::Tensor a0 = g0 * s0;
    const at::Tensor w1 = w * a0;
    const at::Tensor p = at::mm(w1, cov);
    const at::Tensor var1_raw = (p * w1).sum(1);
    const at::Tensor var1 = var1_raw.clamp_min(0);
    const at::Tensor s1 = (var1 + eps1).rsqrt_();
    const at::Tensor a1 = g1 * s1;
    const at::Tensor u = at::mv(w1, mean);
    const auto dt = static_cast<at::ScalarType>(dtype);
    const at::Tensor folded = (w1 * a1.unsqueeze(1)).to(dt);
    const at::Tensor bias = at::addcmul(b1, a1, u, -1).to(dt);
    ctx->save_for_backward({cov, mean, w, g0, g1, s0, s1, w1, p, u, var1_raw});
    ctx->saved_data["conv_bias"] = conv_bias.numel() > 0;
    ctx->mark_non_differentiable({var0, var1});
    return {folded, bias, var0, var1};
  }

  // The chain rule through the forward above, in reverse (each line names what it undoes).
  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const variable_list s = ctx->get_saved_variables();
    const at::Tensor &cov = s[0], &mean = s[1], &w = s[2], &g0 = s[3], &g1 = s[4], &s0 = s[5],
                     &s1 = s[6], &w1 = s[7], &p = s[8], &u = s[9], &var1_raw = s[10];
    const at::ScalarType st = w.scalar_type();  // float32 in training
    const at::Tensor df = grads[0].defined() ? grads[0].to(st) : at::zeros_like(w);
    const at::Tensor dbias = grads[1].defined() ? grads[1].to(st) : at::zeros_like(g1);
    const at::Tensor a1 = g1 * s1;
    // bias = β1 − a1⊙u, u = W1·mean; folded = diag(a1)·W1
    const at::Tensor du = -dbias * a1;
    const at::Tensor da1 = (df * w1).sum(1).sub_(dbias * u);
    at::Tensor dw1 = at::addr(df * a1.unsqueeze(1), du, mean);
    at::Tensor dmean = at::mv(w1.t(), du);
    // a1 = γ1 ⊙ (var1 + ε1)^-½, var1 = clamp(rowsum((W1 Σ) ⊙ W1), 0)
    const at::Tensor dg1 = da1 * s1;
    const at::Tensor dvar1 = (da1 * g1 * s1.pow(3)).mul_(-0.5).mul_(var1_raw.ge(0));
    const at::Tensor dp = w1 * dvar1.unsqueeze(1);
    dw1.add_(p * dvar1.unsqueeze(1)).addmm_(dp, cov.t());
    at::Tensor dcov = at::mm(w1.t(), dp);
    // W1 = W·diag(a0), a0 = γ0 ⊙ (var0 + ε0)^-½, var0 = clamp(diag Σ, 0)
    const at::Tensor da0 = (dw1 * w).sum(0);
    const at::Tensor dw = dw1.mul_(g0 * s0);
    const at::Tensor dg0 = da0 * s0;
    dcov.diagonal().add_((da0 * g0 * s0.pow(3)).mul_(-0.5).mul_(cov.diagonal().ge(0)));
    // Σ = second − mean·meanᵀ
    dmean.addmv_(dcov + dcov.t(), mean, 1, -1);
    const at::Tensor zero_b0 = at::zeros_like(g0);
    const at::Tensor zero_cb =
        ctx->saved_data["conv_bias"].toBool() ? at::zeros_like(g1) : at::Tensor();
    return {dcov,  dmean,   dw,           dg0,          zero_b0,     dg1,
            dbias, zero_cb, at::Tensor(), at::Tensor(), at::Tensor()};
  }
};

}  // namespace

FoldedWeights fold_weights(const at::Tensor& second, const at::Tensor& mean,
                           const FoldParameters& p, at::ScalarType dtype) {
  // An undefined tensor cannot be a node's input: an empty one stands in for no conv bias.
  const at::Tensor conv_bias =
      p.conv_bias.defined() ? p.conv_bias : at::empty({0}, p.weight.options());
  const variable_list out =
      Fold::apply(second, mean, p.weight, p.gamma0, p.beta0, p.gamma1, p.beta1, conv_bias, p.eps0,
                  p.eps1, static_cast<int64_t>(dtype));
  return {out[0], out[1], out[2], out[3]};
}

}  // namespace coatnet::model
