#include "model/transformer.h"

#include <ATen/ATen.h>

#include <optional>

#include "model/macs.h"

namespace coatnet::model {

Attention2dImpl::Attention2dImpl(int in, int out, int grid_h, int grid_w,
                                 const TransformerBlockSpec& spec) {
  int dim_attn = spec.expand_first ? out : in;
  dim_head = spec.dim_head;
  heads = dim_attn / dim_head;
  qkv = register_module("qkv", make_conv(in, dim_attn * 3, 1, 1, true));
  rel_pos = register_module("rel_pos", RelPosBias(grid_h, grid_w, heads));
  proj = register_module("proj", make_conv(dim_attn, out, 1, 1, true));
}

at::Tensor Attention2dImpl::forward(const at::Tensor& x) {
  const int64_t b = x.size(0), h = x.size(2), w = x.size(3), n = h * w;
  TORCH_CHECK(h == rel_pos->h && w == rel_pos->w, "attention built for a ", rel_pos->h, "x",
              rel_pos->w, " grid got a ", h, "x", w,
              " feature map: build the model for this "
              "image size (model.image_size) instead");
  const at::Tensor qkv_out = conv(qkv, x);
  count_dot(2 * b * heads * n * n, dim_head);  // q·k and attn·v
  // (b, n, heads·dim_head): token-major, so NHWC.
  const at::Tensor out = relpos_attention_composite(qkv_out, *rel_pos, heads);
  if (x.suggest_memory_format() == at::MemoryFormat::ChannelsLast) {
    // The projection takes the tokens in their own layout, channels-last. Handing it the NCHW
    // reshape below instead (the timm way) copies them into the other layout: on an H100 this
    // saved 0.6 ms of the step's GEMMs (1,624 vs 1,616 images/s).
    return conv(proj, out.view({b, h, w, heads * dim_head}).permute({0, 3, 1, 2}));
  }
  return conv(proj, out.transpose(1, 2).contiguous().view({b, heads * dim_head, h, w}));
}

at::Tensor relpos_attention_composite(const at::Tensor& qkv, RelPosBiasImpl& rel_pos,
                                      int64_t heads) {
  const int64_t b = qkv.size(0), n = qkv.size(2) * qkv.size(3);
  const int64_t dim_head = qkv.size(1) / (3 * heads);
  // Channels are laid out head-first: [q_h0 k_h0 v_h0 q_h1 ...], each dim_head wide (timm).
  auto parts = qkv.view({b, heads, 3 * dim_head, n}).chunk(3, 2);
  auto tokens = [](const at::Tensor& t) { return t.transpose(-1, -2).contiguous(); };
  // A contiguous bias keeps scaled_dot_product_attention on its memory-efficient kernel.
  const at::Tensor out = at::scaled_dot_product_attention(
      tokens(parts[0]), tokens(parts[1]), tokens(parts[2]), rel_pos.bias().to(qkv.dtype()));
  return out.transpose(1, 2).reshape({b, n, heads * dim_head});
}

namespace {
struct SdpaFlags {
  bool flash, efficient, cudnn, math;
};
std::optional<SdpaFlags> g_atens_flags;  // ATen's, before the first set_sdpa_backend
}  // namespace

void set_sdpa_backend(SdpaBackend backend) {
  at::Context& c = at::globalContext();
  if (!g_atens_flags)
    g_atens_flags = SdpaFlags{c.userEnabledFlashSDP(), c.userEnabledMemEfficientSDP(),
                              c.userEnabledCuDNNSDP(), c.userEnabledMathSDP()};
  const SdpaFlags f =
      backend == SdpaBackend::kAuto
          ? *g_atens_flags
          : SdpaFlags{false, backend == SdpaBackend::kEfficient, backend == SdpaBackend::kCudnn,
                      backend == SdpaBackend::kMath};
  c.setSDPUseFlash(f.flash);
  c.setSDPUseMemEfficient(f.efficient);
  c.setSDPUseCuDNN(f.cudnn);
  c.setSDPUseMath(f.math);
}

TransformerBlockImpl::TransformerBlockImpl(const TransformerOptions& o) : options(o) {
  const TransformerBlockSpec& s = o.spec();
  auto norm = LayerNorm2d(LayerNorm2dOptions(o.in()).eps(s.ln_eps));
  if (o.stride() == 2) {
    shortcut = register_module(
        "shortcut", Downsample2d(Downsample2dOptions(o.in(), o.out()).bias(s.shortcut_bias)));
    norm1_down =
        register_module("norm1", torch::nn::Sequential({{"norm", norm}, {"down", Pool2x2()}}));
  } else {
    if (o.in() != o.out())  // a width change at full resolution: the shortcut is projected
      shortcut = register_module(
          "shortcut",
          Downsample2d(Downsample2dOptions(o.in(), o.out()).bias(s.shortcut_bias).pool(false)));
    norm1 = register_module("norm1", norm);
  }
  attn = register_module("attn", Attention2d(o.in(), o.out(), o.grid(), o.grid(), s));
  norm2 = register_module("norm2", LayerNorm2d(LayerNorm2dOptions(o.out()).eps(s.ln_eps)));
  mlp = register_module(
      "mlp", ConvMlp(ConvMlpOptions(o.out(), static_cast<int>(o.out() * s.mlp_ratio)).act(s.act)));
}

at::Tensor TransformerBlockImpl::forward(const at::Tensor& x) {
  bool train = is_training();
  at::Tensor y = (shortcut ? shortcut->forward(x) : x) +
                 drop_path(attn->forward(norm1 ? norm1->forward(x) : norm1_down->forward(x)),
                           options.drop_path(), train);
  return y + drop_path(mlp->forward(norm2->forward(y)), options.drop_path(), train);
}

}  // namespace coatnet::model
