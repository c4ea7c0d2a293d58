// The paper's "T" block on NCHW feature maps: pre-norm relative attention and a 1x1-conv MLP.
//   x = shortcut(x) + drop_path(attn(norm1(x)));  x = x + drop_path(mlp(norm2(x)))
// The first block of a stage downsamples: norm1 pools after normalising and the shortcut is a
// pooled projection.
#pragma once

#include "model/layers.h"
#include "model/relpos.h"

namespace coatnet::model {

// Multi-head self-attention over all H×W positions with a relative position bias.
class Attention2dImpl : public torch::nn::Module {
 public:
  Attention2dImpl(int in, int out, int grid_h, int grid_w, const TransformerBlockSpec& spec);
  at::Tensor forward(const at::Tensor& x);
  torch::nn::Conv2d qkv{nullptr}, proj{nullptr};
  RelPosBias rel_pos{nullptr};
  int heads, dim_head;
};
TORCH_MODULE(Attention2d);

// The attention from the qkv convolution's output (B, heads·3·D, H, W) with ATen: q, k and v
// sliced and made contiguous token-major, the bias gathered from the table, then
// scaled_dot_product_attention. (B, H·W, heads·D). A fused CUDA kernel of it (flash-attention
// tiles with the table gathered inside, WMMA) measured 0.35-0.54x this on an H100 and was
// removed (docs/GPU.md, "Kernels").
at::Tensor relpos_attention_composite(const at::Tensor& qkv, RelPosBiasImpl& rel_pos,
                                      int64_t heads);

// Which of scaled_dot_product_attention's backends the T blocks' attention may take
// (train.attention): ATen's process-wide flags, set for a run like set_pointwise_gemm. kAuto
// leaves ATen's choice (its flags as they were before the first setting); each other value
// allows that backend alone, so an input it refuses ends the run ("No viable backend") instead
// of falling back unseen. On a GPU ATen chose the memory-efficient kernel for our biased
// attention; whether cuDNN's takes the bias with its gradient, and is faster, is gpu-check's
// attention_composite row to say.
enum class SdpaBackend { kAuto, kEfficient, kCudnn, kMath };
void set_sdpa_backend(SdpaBackend backend);
using SdpaBackendScope = SettingScope<SdpaBackend, set_sdpa_backend>;  // SdpaBackendScope on(kMath)

struct TransformerOptions {
  TransformerOptions(int in, int out, int stride, int grid)
      : in_(in), out_(out), stride_(stride), grid_(grid) {}
  TORCH_ARG(int, in);
  TORCH_ARG(int, out);
  TORCH_ARG(int, stride);
  TORCH_ARG(int, grid);  // output feature map side; the bias table covers it whole
  TORCH_ARG(double, drop_path) = 0.0;
  TORCH_ARG(TransformerBlockSpec, spec);
};

//   TransformerBlock t(TransformerOptions(384, 768, 2, 7)); y = t(x);  // (B,384,14,14) ->
//   (B,768,7,7)
class TransformerBlockImpl : public torch::nn::Module {
 public:
  explicit TransformerBlockImpl(const TransformerOptions& options);
  at::Tensor forward(const at::Tensor& x);

  TransformerOptions options;
  Downsample2d shortcut{nullptr};
  // "norm1" is a LayerNorm2d, or {norm, down} when downsampling (timm's names either way).
  LayerNorm2d norm1{nullptr};
  torch::nn::Sequential norm1_down{nullptr};
  Attention2d attn{nullptr};
  LayerNorm2d norm2{nullptr};
  ConvMlp mlp{nullptr};
};
TORCH_MODULE(TransformerBlock);

}  // namespace coatnet::model
