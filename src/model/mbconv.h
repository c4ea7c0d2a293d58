// MBConv block with pre-norm BN and squeeze-excitation (the paper's "C" block):
//   x + drop_path(proj(SE(dw3x3(expand(BN(x))))))
// The first block of a stage downsamples; its shortcut is 2x2 avg-pool + 1x1 projection.
#pragma once

#include "model/layers.h"

namespace coatnet::model {

struct MbConvOptions {
  MbConvOptions(int in, int out, int stride) : in_(in), out_(out), stride_(stride) {}
  TORCH_ARG(int, in);
  TORCH_ARG(int, out);
  TORCH_ARG(int, stride);
  TORCH_ARG(double, drop_path) = 0.0;
  TORCH_ARG(ConvBlockSpec, spec);
};

//   MbConv block(MbConvOptions(64, 96, 2)); y = block(x);  // (B,64,H,W) -> (B,96,H/2,W/2)
class MbConvImpl : public torch::nn::Module {
 public:
  explicit MbConvImpl(const MbConvOptions& options);
  at::Tensor forward(const at::Tensor& x);

  MbConvOptions options;
  Downsample2d shortcut{nullptr};  // when stride 2 or the width changes
  torch::nn::BatchNorm2d pre_norm{nullptr}, norm1{nullptr}, norm2{nullptr};
  torch::nn::Conv2d conv1_1x1{nullptr}, conv2_kxk{nullptr}, conv3_1x1{nullptr};
  SqueezeExcite se{nullptr};  // registered as "se_early" when it precedes norm2
};
TORCH_MODULE(MbConv);

}  // namespace coatnet::model
