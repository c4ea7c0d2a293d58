// The T blocks' attention, softmax(q·kᵀ/√D + B)·v with B gathered from the relative-position
// table (model::RelPosBias), as one autograd operation on the qkv convolution's output, for
// kernels that do it fused: cuda::relpos_attention_kernels() (opt-in with train.cuda_kernels:
// [relpos_attention]) and their CPU emulation, cuda::relpos_attention_emulated(), which the CPU
// tests run. Without kernels (the default), Attention2d runs the ATen composite (the bias
// gathered into a (heads, N, N) tensor, then scaled_dot_product_attention).
//
//   model::set_relpos_attention_kernels(&cuda::relpos_attention_kernels());
//   at::Tensor out = model::relpos_attention(*kernels, qkv, rel_pos->table, heads);
#pragma once

#include <ATen/core/Tensor.h>

#include <vector>

#include "model/setting_scope.h"

namespace coatnet::model {

struct RelPosAttentionKernels {
  // qkv: (B, heads·3·D, H, W), per head [q k v] D channels each (timm's layout); table:
  // ((2H-1)(2W-1), heads) float32. {out (B, H·W, heads·D) in qkv's dtype, the rows' log-sum-exp
  // (B·heads, H·W) float32}.
  std::vector<at::Tensor> (*forward)(const at::Tensor& qkv, const at::Tensor& table, int64_t heads);
  // {dqkv (qkv's shape), dtable (float32)} from dout (out's shape).
  std::vector<at::Tensor> (*backward)(const at::Tensor& dout, const at::Tensor& qkv,
                                      const at::Tensor& out, const at::Tensor& lse,
                                      const at::Tensor& table, int64_t heads);
  // Whether these kernels take this qkv (device, dtype, head size, what fits the device).
  bool (*applies)(const at::Tensor& qkv, int64_t heads);
};

// Process-wide (one process trains one model), like set_bn_gelu_kernels; nullptr (the default):
// the composite.
void set_relpos_attention_kernels(const RelPosAttentionKernels* kernels);
const RelPosAttentionKernels* relpos_attention_kernels();
using RelPosAttentionKernelsScope =
    SettingScope<const RelPosAttentionKernels*, set_relpos_attention_kernels>;

// The attention through `kernels`, differentiable in qkv and the table: (B, H·W, heads·D).
at::Tensor relpos_attention(const RelPosAttentionKernels& kernels, const at::Tensor& qkv,
                            const at::Tensor& table, int64_t heads);

}  // namespace coatnet::model
