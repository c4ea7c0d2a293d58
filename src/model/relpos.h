// Relative position bias of CoAtNet's transformer blocks (the paper's eq. 3): each head owns a
// table of (2H-1)(2W-1) learned biases, one per relative offset (dy, dx), added to q·k/sqrt(d)
// before the softmax. Table layout and parameter name follow timm's RelPosBias.
#pragma once

#include <torch/nn/module.h>

#include <utility>

namespace coatnet::model {

// Index into the flattened table for every (query, key) pair of an H×W grid, shape (HW·HW):
// (qy-ky+H-1)·(2W-1) + (qx-kx+W-1).
at::Tensor relative_position_index(int64_t h, int64_t w);

// Resize a (2H-1)(2W-1) × heads table to another grid by bilinear interpolation over the
// offset plane (the paper's method for 224 -> 384 fine-tuning). Same size = unchanged.
at::Tensor resize_bias_table(const at::Tensor& table, std::pair<int64_t, int64_t> old_hw,
                             std::pair<int64_t, int64_t> new_hw);

// The grid a table was made for, from its row count: (2H-1)(2W-1) rows, square unless `hint`
// (the current grid) has exactly that many. Throws std::invalid_argument otherwise.
std::pair<int64_t, int64_t> table_grid(int64_t rows, std::pair<int64_t, int64_t> hint);

class RelPosBiasImpl : public torch::nn::Module {
 public:
  RelPosBiasImpl(int64_t h, int64_t w, int64_t heads);
  // (heads, HW, HW) bias for attention logits, contiguous.
  at::Tensor bias();
  at::Tensor table;  // "relative_position_bias_table": ((2H-1)(2W-1), heads)
  int64_t h, w, heads;

 private:
  at::Tensor index_;  // not a buffer: derived, so not in the state dict (as in timm)
};
TORCH_MODULE(RelPosBias);

}  // namespace coatnet::model
