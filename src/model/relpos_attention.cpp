#include "model/relpos_attention.h"

#include <torch/csrc/autograd/custom_function.h>

namespace coatnet::model {

namespace {

const RelPosAttentionKernels* g_kernels = nullptr;

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

// Keeps qkv, the table, the output and the log-sum-exps (B·heads·N floats) for backward, which
// recomputes the probabilities from them, as flash attention does.
struct RelPosAttentionFunction : public torch::autograd::Function<RelPosAttentionFunction> {
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& qkv, const at::Tensor& table,
                            int64_t heads, const RelPosAttentionKernels* k) {
    std::vector<at::Tensor> r = k->forward(qkv, table, heads);
    ctx->save_for_backward({qkv, table, r[0], r[1]});
    ctx->saved_data["heads"] = heads;
    ctx->saved_data["kernels"] = reinterpret_cast<int64_t>(k);
    return r[0];
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const auto s = ctx->get_saved_variables();
    const auto* k =
        reinterpret_cast<const RelPosAttentionKernels*>(ctx->saved_data["kernels"].toInt());
    std::vector<at::Tensor> g =
        k->backward(grads[0], s[0], s[2], s[3], s[1], ctx->saved_data["heads"].toInt());
    return {g[0], g[1], at::Tensor(), at::Tensor()};
  }
};

}  // namespace

void set_relpos_attention_kernels(const RelPosAttentionKernels* kernels) {
  g_kernels = kernels;
}

const RelPosAttentionKernels* relpos_attention_kernels() {
  return g_kernels;
}

at::Tensor relpos_attention(const RelPosAttentionKernels& kernels, const at::Tensor& qkv,
                            const at::Tensor& table, int64_t heads) {
  return RelPosAttentionFunction::apply(qkv, table, heads, &kernels);
}

}  // namespace coatnet::model
