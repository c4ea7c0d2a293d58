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
// (count, mean, var) — the numerically safe pairwise form, not E[x²] - E[x]².
struct GlobalStats {
  at::Tensor mean, var;
  double count = 0;
};

GlobalStats global_stats(const at::Tensor& x, Comm& comm) {
  const int64_t c = x.size(1);
  const double n = static_cast<double>(x.numel() / c);
  auto [var, mean] = at::var_mean(x, {0, 2, 3}, /*correction=*/0, /*keepdim=*/false);
  at::Tensor local = at::cat({mean, var, at::full({1}, n, x.options())});
  at::Tensor all = comm.allgather(local, "SyncBatchNorm statistics");  // (W, 2C+1)
  at::Tensor counts = all.narrow(1, 2 * c, 1);                         // (W, 1)
  at::Tensor means = all.narrow(1, 0, c), vars = all.narrow(1, c, c);
  GlobalStats g;
  g.count = counts.sum().item<double>();
  at::Tensor w = counts / g.count;
  g.mean = (w * means).sum(0);
  g.var = (w * (vars + (means - g.mean).pow(2))).sum(0);
  return g;
}

at::Tensor per_channel(const at::Tensor& v) {
  return v.view({1, -1, 1, 1});
}

struct SyncBatchNormFunction : public torch::autograd::Function<SyncBatchNormFunction> {
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& x, const at::Tensor& weight,
                            const at::Tensor& bias, torch::nn::BatchNorm2dImpl* bn, Comm* comm) {
    GlobalStats g = global_stats(x, *comm);
    const double eps = bn->options.eps();
    at::Tensor invstd = (g.var + eps).rsqrt();
    if (bn->options.track_running_stats()) {
      const double m = bn->options.momentum().value_or(0.1);
      at::NoGradGuard no_grad;
      bn->running_mean.mul_(1 - m).add_(g.mean, m);
      bn->running_var.mul_(1 - m).add_(g.var * (g.count / std::max(g.count - 1, 1.0)), m);
      bn->num_batches_tracked.add_(1);
    }
    at::Tensor xhat = (x - per_channel(g.mean)) * per_channel(invstd);
    ctx->save_for_backward({xhat, invstd, weight});
    ctx->saved_data["count"] = g.count;
    ctx->saved_data["comm"] = reinterpret_cast<int64_t>(comm);
    return xhat * per_channel(weight) + per_channel(bias);
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    auto saved = ctx->get_saved_variables();
    const at::Tensor &xhat = saved[0], &invstd = saved[1], &weight = saved[2];
    const double count = ctx->saved_data["count"].toDouble();
    Comm* comm = reinterpret_cast<Comm*>(ctx->saved_data["comm"].toInt());
    const at::Tensor dy = grads[0].contiguous();
    at::Tensor sum_dy = dy.sum({0, 2, 3});
    at::Tensor sum_dy_xhat = (dy * xhat).sum({0, 2, 3});
    // The parameters' gradients are this rank's share; the bucket all-reduce averages them.
    at::Tensor grad_weight = sum_dy_xhat.clone(), grad_bias = sum_dy.clone();
    at::Tensor sums = at::cat({sum_dy, sum_dy_xhat});
    comm->allreduce(sums, "SyncBatchNorm backward");
    const int64_t c = sum_dy.numel();
    at::Tensor mean_dy = sums.narrow(0, 0, c) / count;
    at::Tensor mean_dy_xhat = sums.narrow(0, c, c) / count;
    at::Tensor dx = per_channel(weight * invstd) *
                    (dy - per_channel(mean_dy) - xhat * per_channel(mean_dy_xhat));
    return {dx, grad_weight, grad_bias, at::Tensor(), at::Tensor()};
  }
};

}  // namespace

at::Tensor sync_batch_norm(torch::nn::BatchNorm2dImpl& bn, const at::Tensor& x, Comm& comm) {
  return SyncBatchNormFunction::apply(x, bn.weight, bn.bias, &bn, &comm);
}

void enable_sync_batch_norm(Comm& comm) {
  Comm* c = &comm;
  model::set_batch_norm_override([c](torch::nn::BatchNorm2dImpl& bn, const at::Tensor& x) {
    return sync_batch_norm(bn, x, *c);
  });
}

void disable_sync_batch_norm() {
  model::set_batch_norm_override({});
}

}  // namespace coatnet::dist
