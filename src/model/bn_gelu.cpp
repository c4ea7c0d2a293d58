#include "model/bn_gelu.h"

#include <ATen/ATen.h>
#include <torch/csrc/autograd/custom_function.h>

namespace coatnet::model {

namespace {

at::Tensor per_channel(const at::Tensor& v) {
  return v.view({1, -1, 1, 1});
}

// z = x * a + b, with a = weight * invstd and b = bias - mean * a: the normalised, scaled input.
std::pair<at::Tensor, at::Tensor> affine_of(const at::Tensor& weight, const at::Tensor& bias,
                                            const at::Tensor& mean, const at::Tensor& invstd) {
  at::Tensor a = weight.to(at::kFloat) * invstd;
  return {a, bias.to(at::kFloat) - mean * a};
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> reference_forward(
    const at::Tensor& x, const at::Tensor& weight, const at::Tensor& bias, at::Tensor& running_mean,
    at::Tensor& running_var, double momentum, double eps) {
  const at::Tensor x32 = x.to(at::kFloat);
  auto [var, mean] = at::var_mean(x32, {0, 2, 3}, /*correction=*/0, /*keepdim=*/false);
  const at::Tensor invstd = (var + eps).rsqrt();
  const double rows = static_cast<double>(x.numel() / x.size(1));
  {
    at::NoGradGuard no_grad;
    running_mean.mul_(1 - momentum).add_(mean.to(running_mean.scalar_type()), momentum);
    running_var.mul_(1 - momentum)
        .add_((var * (rows / (rows - 1))).to(running_var.scalar_type()), momentum);
  }
  auto [a, b] = affine_of(weight, bias, mean, invstd);
  at::Tensor y = at::gelu(x32 * per_channel(a) + per_channel(b)).to(x.scalar_type());
  return {y.contiguous(x.suggest_memory_format()), mean, invstd};
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> reference_backward(
    const at::Tensor& dy, const at::Tensor& x, const at::Tensor& weight, const at::Tensor& bias,
    const at::Tensor& mean, const at::Tensor& invstd, const at::Tensor& dsample) {
  const at::Tensor x32 = x.to(at::kFloat);
  auto [a, b] = affine_of(weight, bias, mean, invstd);
  at::Tensor dy32 = dy.to(at::kFloat);
  if (dsample.defined()) dy32 = dy32 + dsample.view({x.size(0), x.size(1), 1, 1});
  const at::Tensor dz = at::gelu_backward(dy32, x32 * per_channel(a) + per_channel(b));
  const at::Tensor xmu = x32 - per_channel(mean);
  const at::Tensor sum_dz = dz.sum({0, 2, 3});
  const at::Tensor sum_dz_xmu = (dz * xmu).sum({0, 2, 3});
  // dx = a (dz - mean(dz) - x̂ mean(dz x̂)), x̂ = (x - mean) invstd, in per-channel terms.
  const double rows = static_cast<double>(x.numel() / x.size(1));
  const at::Tensor p = -a * invstd * invstd * sum_dz_xmu / rows;
  const at::Tensor q = -a * sum_dz / rows;
  at::Tensor dx = dz * per_channel(a) + xmu * per_channel(p) + per_channel(q);
  return {dx.to(x.scalar_type()).contiguous(x.suggest_memory_format()),
          (sum_dz_xmu * invstd).to(weight.scalar_type()), sum_dz.to(bias.scalar_type())};
}

bool reference_applies(const at::Tensor&) {
  return true;
}

const BnGeluKernels* g_kernels = nullptr;
bool g_se_mean = false;

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

// Outputs y, and with `with_mean` y's spatial mean too.
struct BnGeluFunction : public torch::autograd::Function<BnGeluFunction> {
  static variable_list forward(AutogradContext* ctx, const at::Tensor& x, const at::Tensor& weight,
                               const at::Tensor& bias, const BnGeluKernels* k,
                               torch::nn::BatchNorm2dImpl* bn, bool with_mean) {
    const double momentum = bn->options.momentum().value_or(0.1);
    auto [y, mean, invstd] =
        k->forward(x, weight, bias, bn->running_mean, bn->running_var, momentum, bn->options.eps());
    bn->num_batches_tracked.add_(1);
    ctx->save_for_backward({x, weight, bias, mean, invstd});
    ctx->saved_data["kernels"] = reinterpret_cast<int64_t>(k);
    if (!with_mean) return {y};
    return {y, y.mean({2, 3}, /*keepdim=*/true)};
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const auto saved = ctx->get_saved_variables();
    const auto* k = reinterpret_cast<const BnGeluKernels*>(ctx->saved_data["kernels"].toInt());
    const at::Tensor& x = saved[0];
    const at::Tensor dy = grads[0].contiguous(x.suggest_memory_format());
    // The mean's gradient (autograd passes zeros where the mean went unused) spread over the
    // H·W pixels, in float32: the kernels add it to dy as they read it.
    at::Tensor dsample;
    if (grads.size() > 1)
      dsample = (grads[1].to(at::kFloat) / static_cast<double>(x.size(2) * x.size(3)))
                    .reshape({x.size(0), x.size(1)})
                    .contiguous();
    auto [dx, dweight, dbias] = k->backward(dy, x, saved[1], saved[2], saved[3], saved[4], dsample);
    return {dx, dweight, dbias, at::Tensor(), at::Tensor(), at::Tensor()};
  }
};

}  // namespace

const BnGeluKernels& bn_gelu_reference() {
  static const BnGeluKernels k{reference_forward, reference_backward, reference_applies};
  return k;
}

void set_bn_gelu_kernels(const BnGeluKernels* kernels) {
  g_kernels = kernels;
}

const BnGeluKernels* bn_gelu_kernels() {
  return g_kernels;
}

void set_bn_gelu_se_mean(bool on) {
  g_se_mean = on;
}

bool bn_gelu_se_mean() {
  return g_se_mean;
}

at::Tensor bn_gelu(const BnGeluKernels& kernels, torch::nn::BatchNorm2dImpl& bn,
                   const at::Tensor& x) {
  return BnGeluFunction::apply(x, bn.weight, bn.bias, &kernels, &bn, false)[0];
}

std::pair<at::Tensor, at::Tensor> bn_gelu_mean(const BnGeluKernels& kernels,
                                               torch::nn::BatchNorm2dImpl& bn,
                                               const at::Tensor& x) {
  variable_list out = BnGeluFunction::apply(x, bn.weight, bn.bias, &kernels, &bn, true);
  return {out[0], out[1]};
}

}  // namespace coatnet::model
