// Fused relative-position attention for CoAtNet's T stages (src/cuda): softmax(q·kᵀ/√d + B)·v,
// where B[h, i, j] = table[offset(i, j), h] is gathered inside the kernel from the per-head table
// of (2H-1)(2W-1) offsets (the paper's eq. 3; model::RelPosBias). Forward and backward, with the
// table's gradient summed inside the backward: no (heads, N, N) bias tensor, no (B, heads, N, N)
// bias gradient and no index_put over the batch, which the ATen composite (index_select of the
// table, scaled_dot_product_attention with that bias, its backward) makes. Opt-in
// (train.cuda_kernels: [relpos_attention]) until measured faster than the composite on a GPU.
//
//   at::Tensor out = cuda::relpos_attention(q, k, v, rel_pos->table, 14, 14);  // autograd-aware
#pragma once

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <vector>

namespace coatnet::cuda {

// q, k, v: (B, heads, N, D) on a CUDA device, float32, bfloat16 or float16, N = grid_h·grid_w;
// table: ((2·grid_h-1)(2·grid_w-1), heads) float32. Returns (B, heads, N, D) in q's dtype;
// gradients flow to q, k, v and the table (float32, accumulated in float32).
at::Tensor relpos_attention(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                            const at::Tensor& table, int64_t grid_h, int64_t grid_w);

// The kernels without autograd (tests and benchmarks): forward returns {out, lse}, backward
// {dq, dk, dv, dtable}.
std::vector<at::Tensor> relpos_attention_forward(const at::Tensor& q, const at::Tensor& k,
                                                 const at::Tensor& v, const at::Tensor& table,
                                                 int64_t grid_h, int64_t grid_w);
std::vector<at::Tensor> relpos_attention_backward(const at::Tensor& dout, const at::Tensor& q,
                                                  const at::Tensor& k, const at::Tensor& v,
                                                  const at::Tensor& out, const at::Tensor& lse,
                                                  const at::Tensor& table, int64_t grid_h,
                                                  int64_t grid_w);

}  // namespace coatnet::cuda
