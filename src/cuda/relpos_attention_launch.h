// The host side of the fused relative-position attention, written once over an executor of its
// thread blocks (relpos_attention_blocks.h): CudaExec launches them as kernels
// (relpos_attention.cu), EmulatedExec runs them serially on the CPU
// (relpos_attention_emulated.cpp). An executor provides:
//   BFloat16, Half                            its 16-bit element types
//   forward<T, D>(shape, args, smem bytes)    the forward blocks over (B·heads, query tiles)
//   backward<T, D>(shape, args, dq bytes, dkv bytes)   backward_dq's blocks, then backward_dkv's
//   reduce_table(shape, partial, dtable)      the table gradient's last sum
#pragma once

#include <ATen/ATen.h>

#include <cmath>
#include <cstdint>
#include <type_traits>
#include <vector>

#include "cuda/relpos_attention_blocks.h"

namespace coatnet::cuda::relpos {

template <typename T>
T* ptr(const at::Tensor& t) {
  return reinterpret_cast<T*>(t.data_ptr());
}

// The head size, when the kernels take a qkv of this many heads: a 4-d (B, heads·3·D, H, W)
// tensor of float32, bfloat16 or float16 with D = 32 or 64 (0 otherwise).
inline int64_t head_size(const at::Tensor& qkv, int64_t heads) {
  const at::ScalarType t = qkv.scalar_type();
  if (qkv.dim() != 4 || heads <= 0 || qkv.size(1) % (3 * heads) != 0 || qkv.numel() == 0 ||
      !(t == at::kFloat || t == at::kBFloat16 || t == at::kHalf))
    return 0;
  const int64_t d = qkv.size(1) / (3 * heads);
  return d == 32 || d == 64 ? d : 0;
}

// t itself when its data is 16-byte aligned (the blocks load 16 bytes at a time), else a copy.
inline at::Tensor aligned(const at::Tensor& t, at::MemoryFormat format) {
  at::Tensor c = t.contiguous(format);
  return reinterpret_cast<uintptr_t>(c.data_ptr()) % 16 == 0 ? c : c.clone(format);
}

inline Shape shape_of(const at::Tensor& qkv, const at::Tensor& table, int64_t heads) {
  const int64_t d = head_size(qkv, heads);
  TORCH_CHECK(d != 0,
              "relpos_attention: qkv must be (B, heads·3·D, H, W) float32, bfloat16 or "
              "float16 with D = 32 or 64 for ",
              heads, " heads, got ", qkv.sizes(), " ", qkv.scalar_type());
  Shape s{static_cast<int>(qkv.size(0)),
          static_cast<int>(heads),
          static_cast<int>(qkv.size(2) * qkv.size(3)),
          static_cast<int>(qkv.size(2)),
          static_cast<int>(qkv.size(3)),
          static_cast<float>(1.0 / std::sqrt(static_cast<double>(d)))};
  TORCH_CHECK(table.dim() == 2 && table.size(0) == s.table_rows() && table.size(1) == heads &&
                  table.scalar_type() == at::kFloat && table.device() == qkv.device(),
              "relpos_attention: the table of a ", s.gh, "x", s.gw, " grid must be (",
              s.table_rows(), ", ", heads, ") float32 on ", qkv.device(), ", got ", table.sizes(),
              " ", table.scalar_type(), " on ", table.device());
  return s;
}

// Calls f(T{}, std::integral_constant<int, D>{}) for qkv's element type and head size.
template <typename Exec, typename F>
void dispatch(const at::Tensor& qkv, int64_t heads, F&& f) {
  auto with = [&](auto zero) {
    if (head_size(qkv, heads) == 32)
      f(zero, std::integral_constant<int, 32>{});
    else
      f(zero, std::integral_constant<int, 64>{});
  };
  switch (qkv.scalar_type()) {
    case at::kFloat:
      return with(float{});
    case at::kBFloat16:
      return with(typename Exec::BFloat16{});
    default:
      return with(typename Exec::Half{});
  }
}

// The forward's tensors (what the backward reads again).
template <typename T>
Args<T> forward_args(const at::Tensor& qkv, const at::Tensor& table, const at::Tensor& out,
                     const at::Tensor& lse) {
  Args<T> a{};
  a.qkv = ptr<T>(qkv);
  a.table = ptr<float>(table);
  a.out = ptr<T>(out);
  a.lse = ptr<float>(lse);
  return a;
}

// {out (B, H·W, heads·D) in qkv's dtype, lse (B·heads, H·W) float32}.
template <typename Exec>
std::vector<at::Tensor> forward(const at::Tensor& qkv_in, const at::Tensor& table_in,
                                int64_t heads) {
  const at::Tensor qkv = aligned(qkv_in, at::MemoryFormat::ChannelsLast);
  const at::Tensor table = table_in.contiguous();
  const Shape s = shape_of(qkv, table, heads);
  const int64_t d = head_size(qkv, heads);
  at::Tensor out = at::empty({s.batch, s.n, heads * d}, qkv.options());
  at::Tensor lse = at::empty({s.batch * heads, s.n}, qkv.options().dtype(at::kFloat));
  dispatch<Exec>(qkv, heads, [&](auto zero, auto dim) {
    using T = decltype(zero);
    constexpr int D = decltype(dim)::value;
    const Args<T> a = forward_args<T>(qkv, table, out, lse);
    Exec::template forward<T, D>(s, a, forward_layout<T, D>(s, nullptr).bytes);
  });
  return {out, lse};
}

// {dqkv (qkv's shape, channels-last), dtable (the table's shape, float32)}.
template <typename Exec>
std::vector<at::Tensor> backward(const at::Tensor& dout_in, const at::Tensor& qkv_in,
                                 const at::Tensor& out_in, const at::Tensor& lse_in,
                                 const at::Tensor& table_in, int64_t heads) {
  const at::Tensor qkv = aligned(qkv_in, at::MemoryFormat::ChannelsLast);
  const at::Tensor table = table_in.contiguous();
  const Shape s = shape_of(qkv, table, heads);
  const at::Tensor dout = aligned(dout_in.to(qkv.scalar_type()), at::MemoryFormat::Contiguous);
  const at::Tensor out = out_in.contiguous(), lse = lse_in.contiguous();
  TORCH_CHECK(dout.sizes() == out.sizes() && out.scalar_type() == qkv.scalar_type() &&
                  lse.numel() == static_cast<int64_t>(s.batch) * heads * s.n,
              "relpos_attention: backward got dout ", dout.sizes(), ", out ", out.sizes(), " ",
              out.scalar_type(), ", lse ", lse.sizes(), " for qkv ", qkv.sizes());
  at::Tensor dqkv = at::empty_like(qkv, at::MemoryFormat::ChannelsLast);
  at::Tensor dtable = at::empty_like(table);
  at::Tensor delta = at::empty_like(lse);
  at::Tensor part = at::empty({static_cast<int64_t>(s.batch) * heads * s.tiles(), s.table_rows()},
                              table.options());
  dispatch<Exec>(qkv, heads, [&](auto zero, auto dim) {
    using T = decltype(zero);
    constexpr int D = decltype(dim)::value;
    Args<T> a = forward_args<T>(qkv, table, out, lse);
    a.dout = ptr<T>(dout);
    a.delta = ptr<float>(delta);
    a.dqkv = ptr<T>(dqkv);
    a.dtable_part = ptr<float>(part);
    Exec::template backward<T, D>(s, a, backward_dq_layout<T, D>(s, nullptr).bytes,
                                  backward_dkv_layout<T, D>(s, nullptr).bytes);
  });
  Exec::reduce_table(s, ptr<float>(part), ptr<float>(dtable));
  return {dqkv, dtable};
}

}  // namespace coatnet::cuda::relpos
