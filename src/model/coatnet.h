// CoAtNet (Dai et al., NeurIPS 2021): a conv stem, then stages of MBConv ("C") and relative-
// attention transformer ("T") blocks, each halving the resolution, then a classifier head.
//
//   auto net = CoAtNet(variant("coatnet_0_224"));
//   at::Tensor logits = net->forward(images);  // (B,3,224,224) -> (B,1000)
//
// Parameter names equal timm's state_dict keys (stem.conv1.weight, stages.2.blocks.0.attn.
// qkv.weight, head.fc.bias, ...), so `load_weights` takes timm safetensors as they are.
#pragma once

#include <torch/arg.h>
#include <torch/nn/modules/container/modulelist.h>

#include "model/layers.h"
#include "model/variants.h"

namespace coatnet::model {

// One stage: `depth` blocks of one type, the first of which downsamples by 2.
struct StageOptions {
  StageOptions(int in, int out, BlockType type, int depth)
      : in_(in), out_(out), type_(type), depth_(depth) {}
  TORCH_ARG(int, in);
  TORCH_ARG(int, out);
  TORCH_ARG(BlockType, type);
  TORCH_ARG(int, depth);
  TORCH_ARG(int, stride) = 2;                 // of the first block: 2 downsamples, 1 keeps
  TORCH_ARG(int, grid) = 0;                   // output feature map side (bias tables of T blocks)
  TORCH_ARG(std::vector<double>, drop_path);  // per block; empty: none
  TORCH_ARG(ConvBlockSpec, conv);
  TORCH_ARG(TransformerBlockSpec, transformer);
};

class StageImpl : public torch::nn::Module {
 public:
  explicit StageImpl(const StageOptions& options);
  at::Tensor forward(const at::Tensor& x) { return blocks->forward(x); }
  torch::nn::Sequential blocks{nullptr};
};
TORCH_MODULE(Stage);

class PreLogitsImpl : public torch::nn::Module {
 public:
  PreLogitsImpl(int in, int hidden);
  at::Tensor forward(const at::Tensor& x) { return at::tanh(linear(fc, x)); }
  torch::nn::Linear fc{nullptr};
};
TORCH_MODULE(PreLogits);

// Global average pool -> [LayerNorm -> Linear -> tanh] -> dropout -> Linear. The bracket is the
// paper variants' pre-logits MLP (timm's NormMlpClassifierHead); without it the final norm sits
// on the feature map instead (timm's ClassifierHead for the rw variants).
struct HeadOptions {
  HeadOptions(int in, int classes) : in_(in), classes_(classes) {}
  TORCH_ARG(int, in);
  TORCH_ARG(int, classes);
  TORCH_ARG(int, hidden) = 0;  // pre-logits width; 0: none
  TORCH_ARG(double, drop_rate) = 0.0;
  TORCH_ARG(double, ln_eps) = 1e-6;
};

class HeadImpl : public torch::nn::Module {
 public:
  explicit HeadImpl(const HeadOptions& options);
  at::Tensor forward(const at::Tensor& x);
  LayerNorm2d norm{nullptr};
  PreLogits pre_logits{nullptr};
  torch::nn::Linear fc{nullptr};
  double drop_rate;
};
TORCH_MODULE(Head);

struct StageShape {
  std::string name;  // "stem", "stages.0", ...
  int channels, height, width;
};

class CoAtNetImpl : public torch::nn::Module {
 public:
  explicit CoAtNetImpl(const ModelSpec& spec);
  at::Tensor forward(const at::Tensor& x);
  at::Tensor forward_features(const at::Tensor& x);  // before the head

  // timm's "vit_eff" scheme: EfficientNet-style normal for conv blocks, Xavier for transformer
  // blocks, N(0, 0.02) for bias tables.
  void init_weights();

  ModelSpec spec;
  Stem stem{nullptr};
  torch::nn::ModuleList stages{nullptr};
  LayerNorm2d norm{nullptr};  // only without a pre-logits head
  Head head{nullptr};
};
TORCH_MODULE(CoAtNet);

std::vector<StageShape> stage_shapes(const ModelSpec& spec);
int64_t count_parameters(const torch::nn::Module& m);
// MACs of one image at spec.image_size, measured by running the model once.
int64_t count_macs(CoAtNet& net);

}  // namespace coatnet::model
