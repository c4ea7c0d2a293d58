// The fused relative-position attention as an autograd function: the forward kernel keeps the
// row log-sum-exps, the backward kernels recompute the probabilities from them (as flash
// attention does), so nothing of size N×N outlives a kernel.
#include <torch/csrc/autograd/custom_function.h>

#include "cuda/relpos_attention.h"

namespace coatnet::cuda {

namespace {

class RelPosAttention : public torch::autograd::Function<RelPosAttention> {
 public:
  static at::Tensor forward(torch::autograd::AutogradContext* ctx, const at::Tensor& q,
                            const at::Tensor& k, const at::Tensor& v, const at::Tensor& table,
                            int64_t grid_h, int64_t grid_w) {
    std::vector<at::Tensor> r = relpos_attention_forward(q, k, v, table, grid_h, grid_w);
    ctx->save_for_backward({q, k, v, table, r[0], r[1]});
    ctx->saved_data["grid_h"] = grid_h;
    ctx->saved_data["grid_w"] = grid_w;
    return r[0];
  }

  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grads) {
    const auto saved = ctx->get_saved_variables();
    std::vector<at::Tensor> g = relpos_attention_backward(
        grads[0], saved[0], saved[1], saved[2], saved[4], saved[5], saved[3],
        ctx->saved_data["grid_h"].toInt(), ctx->saved_data["grid_w"].toInt());
    return {g[0], g[1], g[2], g[3], at::Tensor(), at::Tensor()};
  }
};

}  // namespace

at::Tensor relpos_attention(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                            const at::Tensor& table, int64_t grid_h, int64_t grid_w) {
  return RelPosAttention::apply(q, k, v, table, grid_h, grid_w);
}

}  // namespace coatnet::cuda
