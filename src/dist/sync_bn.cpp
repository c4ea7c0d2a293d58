#include "dist/sync_bn.h"

#include <torch/csrc/autograd/custom_function.h>
#include <torch/nn/modules/batchnorm.h>

#include "dist/comm.h"
#include "model/layers.h"

namespace coatnet::dist {

namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

// Per-channel (mean, biased var) over the global batch, combined from every rank's own
// (count, mean, var) — the numerically safe pairwise form, not E[x²] - E[x]². Always float32,
// whatever the input's dtype: under bf16/fp16 autocast the input is low precision, but its
// statistics must not be (a bf16 mean has 8 significant bits), and the reductions run on
// float32 (comm-mpi has no bf16/fp16 type at all). PyTorch's own SyncBatchNorm does the same.
// The count stays a tensor: reading it on the host would synchronise every step with the GPU.
struct GlobalStats {
  at::Tensor mean, var, count;  // float32, (C), (C), (1)
};

GlobalStats global_stats(const at::Tensor& x, Comm& comm) {
  const int64_t c = x.size(1);
  const at::Tensor x32 = x.to(at::kFloat);
  auto [var, mean] = at::var_mean(x32, {0, 2, 3}, /*correction=*/0, /*keepdim=*/false);
  at::Tensor n = at::full({1}, static_cast<double>(x.numel() / c), mean.options());
  at::Tensor all = comm.allgather(at::cat({mean, var, n}), "SyncBatchNorm statistics");
  at::Tensor counts = all.narrow(1, 2 * c, 1);  // (W, 1)
  at::Tensor means = all.narrow(1, 0, c), vars = all.narrow(1, c, c);
  GlobalStats g;
  g.count = counts.sum(0);
  at::Tensor w = counts / g.count;
  g.mean = (w * means).sum(0);
  g.var = (w * (vars + (means - g.mean).pow(2))).sum(0);
  return g;
}

at::Tensor per_channel(const at::Tensor& v) {
  return v.view({1, -1, 1, 1});
}

// Forward and backward compute in float32 and return the input's dtype, as BatchNorm does
// under autocast; only the low-precision input is kept for backward (x̂ is recomputed).
struct SyncBatchNormFunction : public torch::autograd::Function<SyncBatchNormFunction> {
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& x, const at::Tensor& weight,
                            const at::Tensor& bias, torch::nn::BatchNorm2dImpl* bn, Comm* comm) {
    GlobalStats g = global_stats(x, *comm);
    const double eps = bn->options.eps();
    at::Tensor invstd = (g.var + eps).rsqrt();
    if (bn->options.track_running_stats()) {
      const double m = bn->options.momentum().value_or(0.1);
      at::NoGradGuard no_grad;
      at::Tensor unbiased = g.var * g.count / (g.count - 1).clamp_min(1);
      bn->running_mean.mul_(1 - m).add_(g.mean.to(bn->running_mean.scalar_type()), m);
      bn->running_var.mul_(1 - m).add_(unbiased.to(bn->running_var.scalar_type()), m);
      bn->num_batches_tracked.add_(1);
    }
    ctx->save_for_backward({x, g.mean, invstd, weight, g.count});
    ctx->saved_data["comm"] = reinterpret_cast<int64_t>(comm);
    at::Tensor xhat = (x.to(at::kFloat) - per_channel(g.mean)) * per_channel(invstd);
    return (xhat * per_channel(weight.to(at::kFloat)) + per_channel(bias.to(at::kFloat)))
        .to(x.scalar_type());
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    auto saved = ctx->get_saved_variables();
    const at::Tensor &x = saved[0], &mean = saved[1], &invstd = saved[2], &weight = saved[3],
                     &count = saved[4];
    Comm* comm = reinterpret_cast<Comm*>(ctx->saved_data["comm"].toInt());
    const at::Tensor xhat = (x.to(at::kFloat) - per_channel(mean)) * per_channel(invstd);
    const at::Tensor dy = grads[0].to(at::kFloat).contiguous();
    at::Tensor sum_dy = dy.sum({0, 2, 3});
    at::Tensor sum_dy_xhat = (dy * xhat).sum({0, 2, 3});
    // The parameters' gradients are this rank's share; the bucket all-reduce averages them.
    at::Tensor grad_weight = sum_dy_xhat.to(weight.scalar_type());
    at::Tensor grad_bias = sum_dy.to(weight.scalar_type());
    at::Tensor sums = at::cat({sum_dy, sum_dy_xhat});
    comm->allreduce(sums, "SyncBatchNorm backward");
    const int64_t c = sum_dy.numel();
    at::Tensor mean_dy = sums.narrow(0, 0, c) / count;
    at::Tensor mean_dy_xhat = sums.narrow(0, c, c) / count;
    at::Tensor dx = per_channel(weight.to(at::kFloat) * invstd) *
                    (dy - per_channel(mean_dy) - xhat * per_channel(mean_dy_xhat));
    return {dx.to(x.scalar_type()), grad_weight, grad_bias, at::Tensor(), at::Tensor()};
  }
};

}  // namespace

at::Tensor sync_batch_norm(torch::nn::BatchNorm2dImpl& bn, const at::Tensor& x, Comm& comm) {
  return SyncBatchNormFunction::apply(x, bn.weight, bn.bias, &bn, &comm);
}

SyncBatchNormScope::SyncBatchNormScope(Comm& comm) {
  Comm* c = &comm;
  model::set_batch_norm_override([c](torch::nn::BatchNorm2dImpl& bn, const at::Tensor& x) {
    return sync_batch_norm(bn, x, *c);
  });
}

SyncBatchNormScope::~SyncBatchNormScope() {
  model::set_batch_norm_override({});
}

}  // namespace coatnet::dist
