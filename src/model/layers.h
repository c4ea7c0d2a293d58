// Small building blocks shared by the CoAtNet blocks. Module and parameter names follow timm's
// state_dict keys (e.g. `se.fc1.weight`), so timm weights load by name.
#pragma once

#include <torch/nn/module.h>
#include <torch/nn/modules/batchnorm.h>
#include <torch/nn/modules/container/sequential.h>
#include <torch/nn/modules/conv.h>
#include <torch/nn/modules/linear.h>

#include <functional>
#include <utility>

#include "model/setting_scope.h"
#include "model/variants.h"

namespace coatnet::model {

at::Tensor activate(const at::Tensor& x, Act act);

// timm's make_divisible: round to a multiple of `divisor`, never more than 10% below v.
int make_divisible(double v, int divisor = 8);

// The rows of the global batch this process holds, under data parallelism: while a scope lives,
// the random masks of training (stochastic depth, the head's dropout) are drawn for all
// `global_rows` rows and this process keeps rows [first_row, first_row + its batch). With the
// generator seeded alike on every rank (the trainer reseeds it each step from the seed and the
// step alone), each sample of the global batch gets the same mask at any world size, so a run
// resumed at another world size goes on as it would have. Without a scope, every row is ours.
class GlobalBatchRows {
 public:
  GlobalBatchRows(int64_t global_rows, int64_t first_row);
  ~GlobalBatchRows();
  GlobalBatchRows(const GlobalBatchRows&) = delete;
  GlobalBatchRows& operator=(const GlobalBatchRows&) = delete;

 private:
  int64_t saved_global_, saved_first_;
};
// Uniform [0, 1) float32 draws of shape {rows, rest...} for this process's rows (see above).
at::Tensor uniform_for_rows(int64_t rows, at::IntArrayRef rest, const at::TensorOptions& options);

// Mean over H and W, keeping them: (B, C, H, W) -> (B, C, 1, 1). Its gradient (the incoming one
// spread evenly over H×W) is written in x's memory format. Autograd's own mean backward
// materialises it NCHW; added to x's other gradient, channels-last, that is an add ATen cannot
// vectorise (found in every squeeze-excitation by tests/bench/trace_ops.py on a CPU trace).
at::Tensor spatial_mean(const at::Tensor& x);

// 2×2 average pooling, stride 2: the first block of a stage downsamples with it. Its backward
// spreads each gradient over its window with one broadcasting copy written in the input's
// memory format (exactly dy/4, as ATen's); ATen's channels-last avg_pool2d backward took 0.78 ms
// a call on an H100 (3.1 ms a coatnet_0 step) for one read of dy and one write of dx. Odd sizes
// (the last row or column dropped) go to ATen's.
at::Tensor avg_pool_2x2(const at::Tensor& x);
// avg_pool_2x2 as a module, for a Sequential (the T block's norm1 "down").
class Pool2x2Impl : public torch::nn::Module {
 public:
  at::Tensor forward(const at::Tensor& x) { return avg_pool_2x2(x); }
};
TORCH_MODULE(Pool2x2);

// Stochastic depth (timm's DropPath): whole samples' residual branches zeroed with probability
// `rate`, the rest scaled by 1/(1 - rate); masks drawn per row as uniform_for_rows.
at::Tensor drop_path(const at::Tensor& x, double rate, bool training);
// Dropout of a (rows, features) tensor, its mask drawn as uniform_for_rows.
at::Tensor row_dropout(const at::Tensor& x, double rate, bool training);

// Convolution with MAC counting; `padding` is symmetric ((k-1)/2 for the odd kernels used here).
// conv() takes the matrix product (train.pointwise_gemm) or the depthwise stride-2 kernels'
// input gradient (model/dw_conv.h) where they are asked for and apply.
torch::nn::Conv2d make_conv(int in, int out, int k, int stride = 1, bool bias = false,
                            int groups = 1);
at::Tensor conv(torch::nn::Conv2d& c, const at::Tensor& x);
// A 1x1 convolution of stride 1 in one group of a 4-d x: a matrix product of x's channels.
bool is_pointwise(const torch::nn::Conv2dImpl& c, const at::Tensor& x);

// 1x1 convolutions (stride 1, one group) of channels-last activations as one matrix product
// each (train.pointwise_gemm): the activation's (B·H·W, C) rows times the weight, with the bias
// added in the product's epilogue (addmm: cuBLASLt's bias epilogue on a GPU) instead of by a
// separate broadcasting add over the whole output after cuDNN's convolution (ATen's
// convolution adds the bias that way; most likely the 55 strided bf16 adds, 6.6 ms, of a 79 ms
// coatnet_0 step on an H100). Output and gradients stay channels-last. Process-wide, like
// set_bn_gelu_kernels; off by default until measured faster on a GPU.
void set_pointwise_gemm(bool on);
bool pointwise_gemm();
using PointwiseGemmScope = SettingScope<bool, set_pointwise_gemm>;  // PointwiseGemmScope on(true)
// x (B, in, H, W) channels-last, weight (out, in, 1, 1), bias (out) or undefined: the
// convolution, channels-last.
at::Tensor pointwise_conv_gemm(const at::Tensor& x, const at::Tensor& weight,
                               const at::Tensor& bias);

// The squeeze-excitation's gate folded into the 1x1 projection that follows it (train.se_fold):
// conv(c, x * gate) as one batched matrix product whose per-sample weights are the projection's
// scaled by that sample's gate (W·(x⊙g) = (W⊙g)·x). The gated activation x * gate is never made:
// forward skips one pass over the block's widest activation, and backward the two products and
// the spatial sum of the gate's gradient (about 3.0 ms of strided multiplies of a 79 ms
// coatnet_0 step on an H100, the profile said). The per-sample weights (B·in·out) are small.
// c must be 1x1, stride 1, one group (takes_se_fold); x (B, in, H, W) in either layout (output
// in x's), gate (B, in, 1, 1). Process-wide like set_pointwise_gemm; off until measured on a GPU.
void set_se_fold(bool on);
bool se_fold();
using SeFoldScope = SettingScope<bool, set_se_fold>;  // SeFoldScope on(true)
bool takes_se_fold(const torch::nn::Conv2dImpl& c, const at::Tensor& x);
at::Tensor gated_pointwise_conv(torch::nn::Conv2d& c, const at::Tensor& x, const at::Tensor& gate);
at::Tensor linear(torch::nn::Linear& l, const at::Tensor& x);
torch::nn::BatchNorm2d make_bn(int channels, double eps);

// BatchNorm forward. In training, a registered override replaces it: SyncBatchNorm
// (dist/sync_bn.h) computes the statistics over every rank's batch. Process-wide, because
// one process trains one model.
using BatchNormOverride =
    std::function<at::Tensor(torch::nn::BatchNorm2dImpl& bn, const at::Tensor& x)>;
void set_batch_norm_override(BatchNormOverride f);  // empty f: back to local statistics
bool batch_norm_overridden();
at::Tensor batch_norm(torch::nn::BatchNorm2d& bn, const at::Tensor& x);
// BatchNorm then `act`: one fused operation (model/bn_gelu.h) for GELU in training when fused
// kernels are registered and take x, and no override (SyncBatchNorm) is set; else the two.
at::Tensor batch_norm_act(torch::nn::BatchNorm2d& bn, const at::Tensor& x, Act act);
// The same and its output's spatial mean (B, C, 1, 1), for a squeeze-excitation that follows:
// one autograd node of both (model::bn_gelu_mean) where batch_norm_act fuses and
// train.cuda_kernels has bn_gelu_se_mean, else spatial_mean of batch_norm_act's output.
std::pair<at::Tensor, at::Tensor> batch_norm_act_mean(torch::nn::BatchNorm2d& bn,
                                                      const at::Tensor& x, Act act);

// LayerNorm over the channels of an NCHW tensor (timm's LayerNorm2d).
//   LayerNorm2d norm(LayerNorm2dOptions(96)); y = norm(x);
struct LayerNorm2dOptions {
  explicit LayerNorm2dOptions(int64_t channels) : channels_(channels) {}
  TORCH_ARG(int64_t, channels);
  TORCH_ARG(double, eps) = 1e-6;
};
class LayerNorm2dImpl : public torch::nn::Module {
 public:
  explicit LayerNorm2dImpl(const LayerNorm2dOptions& options);
  at::Tensor forward(const at::Tensor& x);
  LayerNorm2dOptions options;
  at::Tensor weight, bias;
};
TORCH_MODULE(LayerNorm2d);

// 2x2 average pooling, then a 1x1 conv when the width changes (timm's Downsample2d, avg2). A
// block that keeps the resolution but changes the width (stride 1: CoAtNet-6/7's transformer
// part of S3) has the 1x1 conv only (pool false).
struct Downsample2dOptions {
  Downsample2dOptions(int in, int out) : in_(in), out_(out) {}
  TORCH_ARG(int, in);
  TORCH_ARG(int, out);
  TORCH_ARG(bool, bias) = true;  // of the 1x1 conv
  TORCH_ARG(bool, pool) = true;
};
class Downsample2dImpl : public torch::nn::Module {
 public:
  explicit Downsample2dImpl(const Downsample2dOptions& options);
  at::Tensor forward(const at::Tensor& x);
  torch::nn::Conv2d expand{nullptr};
  bool pool = true;
};
TORCH_MODULE(Downsample2d);

// Squeeze-and-excitation: global mean -> 1x1 reduce -> act -> 1x1 expand -> sigmoid gate.
struct SqueezeExciteOptions {
  SqueezeExciteOptions(int channels, int reduced) : channels_(channels), reduced_(reduced) {}
  TORCH_ARG(int, channels);
  TORCH_ARG(int, reduced);
  TORCH_ARG(Act, act) = Act::SiLU;
};
class SqueezeExciteImpl : public torch::nn::Module {
 public:
  explicit SqueezeExciteImpl(const SqueezeExciteOptions& options);
  at::Tensor forward(const at::Tensor& x);          // x * gate(x)
  at::Tensor gate(const at::Tensor& x);             // (B, C, 1, 1) in (0, 1)
  at::Tensor gate_of_mean(const at::Tensor& mean);  // the same from x's spatial mean
  torch::nn::Conv2d fc1{nullptr}, fc2{nullptr};
  Act act;
};
TORCH_MODULE(SqueezeExcite);

// Stem: 3x3/2 conv -> BN + act -> 3x3 conv (the first block's pre-norm follows).
class StemImpl : public torch::nn::Module {
 public:
  StemImpl(int in_chans, const std::vector<int>& widths, const ConvBlockSpec& spec);
  at::Tensor forward(const at::Tensor& x);
  torch::nn::Conv2d conv1{nullptr}, conv2{nullptr};
  torch::nn::BatchNorm2d norm1{nullptr};
  Act act;
};
TORCH_MODULE(Stem);

// 1x1 conv MLP of the transformer blocks (timm's ConvMlp).
struct ConvMlpOptions {
  ConvMlpOptions(int channels, int hidden) : channels_(channels), hidden_(hidden) {}
  TORCH_ARG(int, channels);
  TORCH_ARG(int, hidden);
  TORCH_ARG(Act, act) = Act::GELU;
};
class ConvMlpImpl : public torch::nn::Module {
 public:
  explicit ConvMlpImpl(const ConvMlpOptions& options);
  at::Tensor forward(const at::Tensor& x);
  torch::nn::Conv2d fc1{nullptr}, fc2{nullptr};
  Act act;
};
TORCH_MODULE(ConvMlp);

}  // namespace coatnet::model
