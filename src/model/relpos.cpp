#include "model/relpos.h"

#include <ATen/ATen.h>

#include <cmath>
#include <stdexcept>
#include <string>

namespace coatnet::model {

at::Tensor relative_position_index(int64_t h, int64_t w) {
  at::Tensor ys = at::arange(h, at::kLong).repeat_interleave(w);  // y of each flat position
  at::Tensor xs = at::arange(w, at::kLong).repeat({h});           // x of each flat position
  at::Tensor dy = ys.unsqueeze(1) - ys.unsqueeze(0) + (h - 1);
  at::Tensor dx = xs.unsqueeze(1) - xs.unsqueeze(0) + (w - 1);
  return (dy * (2 * w - 1) + dx).reshape({-1});
}

at::Tensor resize_bias_table(const at::Tensor& table, std::pair<int64_t, int64_t> old_hw,
                             std::pair<int64_t, int64_t> new_hw) {
  int64_t oh = 2 * old_hw.first - 1, ow = 2 * old_hw.second - 1;
  int64_t nh = 2 * new_hw.first - 1, nw = 2 * new_hw.second - 1;
  TORCH_CHECK(table.dim() == 2 && table.size(0) == oh * ow, "bias table of shape ", table.sizes(),
              " does not fit a ", old_hw.first, "x", old_hw.second, " grid");
  if (oh == nh && ow == nw) return table;
  int64_t heads = table.size(1);
  at::Tensor plane = table.t().reshape({1, heads, oh, ow}).to(at::kFloat);
  at::Tensor out = at::upsample_bilinear2d(plane, {nh, nw}, /*align_corners=*/false);
  return out.reshape({heads, nh * nw}).t().contiguous().to(table.dtype());
}

std::pair<int64_t, int64_t> table_grid(int64_t rows, std::pair<int64_t, int64_t> hint) {
  if ((2 * hint.first - 1) * (2 * hint.second - 1) == rows) return hint;
  auto side = static_cast<int64_t>(std::llround(std::sqrt(static_cast<double>(rows))));
  if (side * side == rows && side % 2 == 1) return {(side + 1) / 2, (side + 1) / 2};
  throw std::invalid_argument("a relative position table with " + std::to_string(rows) +
                              " rows fits no square grid ((2H-1)^2 rows expected)");
}

RelPosBiasImpl::RelPosBiasImpl(int64_t h_, int64_t w_, int64_t heads_)
    : h(h_), w(w_), heads(heads_) {
  table = register_parameter("relative_position_bias_table",
                             at::zeros({(2 * h - 1) * (2 * w - 1), heads}));
  index_ = relative_position_index(h, w);
}

at::Tensor RelPosBiasImpl::bias() {
  if (index_.device() != table.device()) index_ = index_.to(table.device());
  int64_t n = h * w;
  // Contiguous, as timm's get_bias(): with a strided (permuted) bias scaled_dot_product_attention
  // on a GPU cannot use its memory-efficient kernel and falls back to its math path, which
  // computes bfloat16 and float16 attention in float32 without tensor cores (found in the
  // step's profile on an H100: fp32 GEMMs and softmax, ~10% of the step).
  return table.index_select(0, index_).view({n, n, heads}).permute({2, 0, 1}).contiguous();
}

}  // namespace coatnet::model
