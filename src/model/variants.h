// CoAtNet architectures as data: the paper's Table 3 (coatnet_0..4_224), CoAtNet-5 as timm
// defines it, CoAtNet-6/7 of the paper's appendix, timm's variants with public weights
// (coatnet_0_rw_224, coatnet_nano_rw_224), and custom layouts built from them.
#pragma once

#include <string>
#include <vector>

namespace coatnet::config {
class Config;
}

namespace coatnet::model {

enum class Act { None, GELU, SiLU, ReLU, Tanh };
// What a stage is made of: the letters of a layout string (C = MBConv, T = transformer).
enum class BlockType { MBConv, Transformer };
enum class StrideMode { Pool, Dw, Conv1x1 };  // where an MBConv block downsamples

// MBConv block options (timm's MaxxVitConvCfg, restricted to what CoAtNet uses).
struct ConvBlockSpec {
  double expand_ratio = 4.0;
  bool expand_output = true;  // expansion width from output channels (paper) or input (rw)
  bool pre_norm_act = false;  // activation after the pre-norm BN (rw)
  bool output_bias = true;    // bias in the shortcut and final 1x1 projection
  StrideMode stride_mode = StrideMode::Dw;
  bool se_early = false;  // SE between the depthwise conv and its norm (rw)
  double se_ratio = 0.25;
  Act se_act = Act::SiLU;
  Act act = Act::GELU;
  double bn_eps = 1e-5;
};

// Transformer block options (timm's MaxxVitTransformerCfg for CoAtNet "T" blocks).
struct TransformerBlockSpec {
  int dim_head = 32;
  bool expand_first = true;  // qkv computed at the output width (paper) or the input width (rw)
  bool shortcut_bias = true;
  double mlp_ratio = 4.0;
  Act act = Act::GELU;
  double ln_eps = 1e-6;
};

struct ModelSpec {
  std::string name = "coatnet_0_224";
  std::string layout = "CCTT";  // block type of stages S1..S4: C = MBConv, T = transformer
  std::vector<int> depths{2, 3, 5, 2};
  // Each stage's downsampling: 2 (the first block halves the resolution) or 1 (it keeps it, and
  // projects the shortcut when the width changes). Empty: 2 for every stage. CoAtNet-6/7 split
  // the paper's S3 into an MBConv stage and a stride-1 transformer stage.
  std::vector<int> strides;
  std::vector<int> widths{96, 192, 384, 768};
  std::vector<int> stem_widths{64, 64};  // conv1 and conv2 outputs of the stem
  int head_hidden = 768;                 // 0: final norm + linear; >0: norm + tanh MLP + linear
  int image_size = 224;
  int in_chans = 3;
  int num_classes = 1000;
  double drop_path = 0.0;  // stochastic depth of the last block, linear from 0
  double drop_rate = 0.0;  // dropout before the classifier
  ConvBlockSpec conv;
  TransformerBlockSpec transformer;

  // Throws std::invalid_argument naming the field and value when the spec cannot be built.
  void validate() const;
  // Stage i's block type, from `layout` (validated), and its stride.
  BlockType block_type(size_t stage) const;
  int stride(size_t stage) const { return strides.empty() ? 2 : strides.at(stage); }
  int reduction() const;  // input size / final feature map size
};

// The names of the table of variants in variants.cpp, in its order.
std::vector<std::string> variant_names();
// A named variant; throws std::invalid_argument listing the known names otherwise.
ModelSpec variant(const std::string& name);
// model.* keys of a resolved config applied over the named variant ("custom" = coatnet_0_224
// as the starting point).
ModelSpec spec_from_config(const config::Config& cfg);

}  // namespace coatnet::model
