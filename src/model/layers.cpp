#include "model/layers.h"

#include <ATen/ATen.h>
#include <torch/csrc/autograd/custom_function.h>

#include <stdexcept>
#include <string>
#include <vector>

#include "model/bn_gelu.h"
#include "model/dw_conv.h"
#include "model/macs.h"

namespace coatnet::model {

at::Tensor activate(const at::Tensor& x, Act act) {
  switch (act) {
    case Act::None:
      return x;
    case Act::GELU:
      return at::gelu(x);
    case Act::SiLU:
      return at::silu(x);
    case Act::ReLU:
      return at::relu(x);
    case Act::Tanh:
      return at::tanh(x);
  }
  return x;
}

int make_divisible(double v, int divisor) {
  int nv = std::max(divisor, static_cast<int>(v + divisor / 2.0) / divisor * divisor);
  if (nv < 0.9 * v) nv += divisor;
  return nv;
}

namespace {

struct RowsOfGlobalBatch {
  int64_t global = -1, first = 0;  // global < 0: no scope, every row is ours
};
thread_local RowsOfGlobalBatch rows_of_global_batch;

}  // namespace

GlobalBatchRows::GlobalBatchRows(int64_t global_rows, int64_t first_row)
    : saved_global_(rows_of_global_batch.global), saved_first_(rows_of_global_batch.first) {
  rows_of_global_batch = {global_rows, first_row};
}

GlobalBatchRows::~GlobalBatchRows() {
  rows_of_global_batch = {saved_global_, saved_first_};
}

at::Tensor uniform_for_rows(int64_t rows, at::IntArrayRef rest, const at::TensorOptions& options) {
  const RowsOfGlobalBatch& g = rows_of_global_batch;
  if (g.global >= 0 && g.first + rows > g.global)
    throw std::logic_error("rows " + std::to_string(g.first) + ".." +
                           std::to_string(g.first + rows) + " are not in a global batch of " +
                           std::to_string(g.global));
  std::vector<int64_t> shape{g.global < 0 ? rows : g.global};
  shape.insert(shape.end(), rest.begin(), rest.end());
  at::Tensor u = at::rand(shape, options.dtype(at::kFloat));
  return g.global < 0 ? u : u.narrow(0, g.first, rows);
}

namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

// What a backward needs to write its input's gradient in the input's own memory format.
void save_layout(AutogradContext* ctx, const at::Tensor& x) {
  ctx->saved_data["sizes"] = x.sizes().vec();
  ctx->saved_data["format"] = static_cast<int64_t>(x.suggest_memory_format());
}
std::vector<int64_t> saved_sizes(AutogradContext* ctx) {
  return ctx->saved_data["sizes"].toIntVector();
}
at::Tensor empty_in_saved_layout(AutogradContext* ctx, const at::TensorOptions& options) {
  const auto format = static_cast<at::MemoryFormat>(ctx->saved_data["format"].toInt());
  return at::empty(saved_sizes(ctx), options.memory_format(format));
}

struct SpatialMean : public torch::autograd::Function<SpatialMean> {
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& x) {
    save_layout(ctx, x);
    return x.mean({2, 3}, /*keepdim=*/true);
  }
  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const std::vector<int64_t> s = saved_sizes(ctx);
    const at::Tensor g = grads[0] / static_cast<double>(s[2] * s[3]);
    return {empty_in_saved_layout(ctx, g.options()).copy_(g.expand(s))};
  }
};

struct AvgPool2x2 : public torch::autograd::Function<AvgPool2x2> {
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& x) {
    save_layout(ctx, x);
    return at::avg_pool2d(x, {2, 2}, {2, 2});
  }
  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const std::vector<int64_t> s = saved_sizes(ctx);
    const std::vector<int64_t> windows{s[0], s[1], s[2] / 2, 2, s[3] / 2, 2};
    at::Tensor dx = empty_in_saved_layout(ctx, grads[0].options());
    // dx as (B, C, H/2, 2, W/2, 2): a view in either memory format.
    dx.view(windows).copy_(
        (grads[0] * 0.25).reshape({s[0], s[1], s[2] / 2, 1, s[3] / 2, 1}).expand(windows));
    return {dx};
  }
};

}  // namespace

at::Tensor spatial_mean(const at::Tensor& x) {
  return SpatialMean::apply(x);
}

at::Tensor avg_pool_2x2(const at::Tensor& x) {
  if (x.dim() != 4 || x.size(2) % 2 || x.size(3) % 2) return at::avg_pool2d(x, {2, 2}, {2, 2});
  return AvgPool2x2::apply(x);
}

at::Tensor drop_path(const at::Tensor& x, double rate, bool training) {
  if (!training || rate <= 0.0) return x;
  const double keep = 1.0 - rate;
  const std::vector<int64_t> rest(x.dim() - 1, 1);
  const at::Tensor mask = uniform_for_rows(x.size(0), rest, x.options()).lt(keep);
  return x * mask.to(x.scalar_type()).div_(keep);
}

at::Tensor row_dropout(const at::Tensor& x, double rate, bool training) {
  if (!training || rate <= 0.0) return x;
  const double keep = 1.0 - rate;
  const at::Tensor mask = uniform_for_rows(x.size(0), x.sizes().slice(1), x.options()).lt(keep);
  return x * mask.to(x.scalar_type()).div_(keep);
}

torch::nn::Conv2d make_conv(int in, int out, int k, int stride, bool bias, int groups) {
  return torch::nn::Conv2d(torch::nn::Conv2dOptions(in, out, k)
                               .stride(stride)
                               .padding((k - 1) / 2)
                               .groups(groups)
                               .bias(bias));
}

namespace {
bool g_pointwise_gemm = false;
bool g_se_fold = false;

// A pointwise convolution whose input rows are the activation's memory.
bool takes_pointwise_gemm(const torch::nn::Conv2dImpl& c, const at::Tensor& x) {
  return g_pointwise_gemm && is_pointwise(c, x) && x.is_contiguous(at::MemoryFormat::ChannelsLast);
}
}  // namespace

bool is_pointwise(const torch::nn::Conv2dImpl& c, const at::Tensor& x) {
  const auto& o = c.options;
  return c.weight.size(2) == 1 && c.weight.size(3) == 1 && (*o.stride())[0] == 1 &&
         (*o.stride())[1] == 1 && o.groups() == 1 && x.dim() == 4;
}

void set_pointwise_gemm(bool on) {
  g_pointwise_gemm = on;
}

bool pointwise_gemm() {
  return g_pointwise_gemm;
}

at::Tensor pointwise_conv_gemm(const at::Tensor& x, const at::Tensor& weight,
                               const at::Tensor& bias) {
  const int64_t b = x.size(0), h = x.size(2), w = x.size(3);
  // Channels-last: the (b·h·w, in) rows are x's memory as it is (a view, no copy).
  const at::Tensor rows = x.permute({0, 2, 3, 1}).reshape({b * h * w, x.size(1)});
  const at::Tensor w2 = weight.view({weight.size(0), weight.size(1)}).t();
  const at::Tensor y = bias.defined() ? at::addmm(bias, rows, w2) : at::mm(rows, w2);
  return y.view({b, h, w, weight.size(0)}).permute({0, 3, 1, 2});
}

void set_se_fold(bool on) {
  g_se_fold = on;
}

bool se_fold() {
  return g_se_fold;
}

bool takes_se_fold(const torch::nn::Conv2dImpl& c, const at::Tensor& x) {
  return g_se_fold && is_pointwise(c, x) &&
         (x.is_contiguous(at::MemoryFormat::ChannelsLast) || x.is_contiguous());
}

at::Tensor gated_pointwise_conv(torch::nn::Conv2d& c, const at::Tensor& x, const at::Tensor& gate) {
  const int64_t b = x.size(0), in = x.size(1), h = x.size(2), w = x.size(3);
  const int64_t out = c->weight.size(0);
  const at::Tensor weight = c->weight.view({out, in});
  const at::Tensor& bias = c->bias;
  at::Tensor y;
  if (x.is_contiguous(at::MemoryFormat::ChannelsLast)) {
    // Rows (b, h·w, in), a view of x; per-sample weights (b, in, out): y = rows · (Wᵀ ⊙ g).
    const at::Tensor rows = x.permute({0, 2, 3, 1}).reshape({b, h * w, in});
    const at::Tensor scaled = weight.t().unsqueeze(0) * gate.reshape({b, in, 1});
    y = bias.defined() ? at::baddbmm(bias.view({1, 1, out}), rows, scaled) : at::bmm(rows, scaled);
    y = y.view({b, h, w, out}).permute({0, 3, 1, 2});
  } else {
    // Columns (b, in, h·w), a view of x; per-sample weights (b, out, in): y = (W ⊙ gᵀ) · cols.
    const at::Tensor cols = x.reshape({b, in, h * w});
    const at::Tensor scaled = weight.unsqueeze(0) * gate.reshape({b, 1, in});
    y = bias.defined() ? at::baddbmm(bias.view({1, out, 1}), scaled, cols) : at::bmm(scaled, cols);
    y = y.view({b, out, h, w});
  }
  count_conv(c->weight, y);
  return y;
}

at::Tensor conv(torch::nn::Conv2d& c, const at::Tensor& x) {
  at::Tensor y = takes_pointwise_gemm(*c, x) ? pointwise_conv_gemm(x, c->weight, c->bias)
                 : takes_dw_conv_s2(*c, x)   ? dw_conv_s2(*dw_conv_kernels(), *c, x)
                                             : c->forward(x);
  count_conv(c->weight, y);
  return y;
}

at::Tensor linear(torch::nn::Linear& l, const at::Tensor& x) {
  at::Tensor y = l->forward(x);
  count_dot(y.numel(), l->weight.size(1));
  return y;
}

torch::nn::BatchNorm2d make_bn(int channels, double eps) {
  return torch::nn::BatchNorm2d(torch::nn::BatchNorm2dOptions(channels).eps(eps).momentum(0.1));
}

namespace {
BatchNormOverride& batch_norm_override() {
  static BatchNormOverride f;
  return f;
}
}  // namespace

void set_batch_norm_override(BatchNormOverride f) {
  batch_norm_override() = std::move(f);
}

bool batch_norm_overridden() {
  return static_cast<bool>(batch_norm_override());
}

at::Tensor batch_norm(torch::nn::BatchNorm2d& bn, const at::Tensor& x) {
  const BatchNormOverride& f = batch_norm_override();
  if (f && bn->is_training()) return f(*bn, x);
  return bn->forward(x);
}

namespace {

// The registered BnGeluKernels where they take this BatchNorm + act on x, else nullptr.
const BnGeluKernels* fused_kernels(torch::nn::BatchNorm2d& bn, const at::Tensor& x, Act act) {
  const BnGeluKernels* k = bn_gelu_kernels();
  const auto& o = bn->options;
  // Rows <= 1 go to BatchNorm, which names the problem; a momentum of None (a cumulative
  // average) and a BatchNorm without affine or running statistics have no fused form here.
  if (k && act == Act::GELU && bn->is_training() && !batch_norm_override() && x.dim() == 4 &&
      x.numel() > x.size(1) && o.affine() && o.track_running_stats() && o.momentum() &&
      k->applies(x))
    return k;
  return nullptr;
}

}  // namespace

at::Tensor batch_norm_act(torch::nn::BatchNorm2d& bn, const at::Tensor& x, Act act) {
  if (const BnGeluKernels* k = fused_kernels(bn, x, act)) return bn_gelu(*k, *bn, x);
  return activate(batch_norm(bn, x), act);
}

std::pair<at::Tensor, at::Tensor> batch_norm_act_mean(torch::nn::BatchNorm2d& bn,
                                                      const at::Tensor& x, Act act) {
  const BnGeluKernels* k = fused_kernels(bn, x, act);
  if (k && bn_gelu_se_mean()) return bn_gelu_mean(*k, *bn, x);
  at::Tensor y = batch_norm_act(bn, x, act);
  return {y, spatial_mean(y)};
}

LayerNorm2dImpl::LayerNorm2dImpl(const LayerNorm2dOptions& o) : options(o) {
  weight = register_parameter("weight", at::ones({o.channels()}));
  bias = register_parameter("bias", at::zeros({o.channels()}));
}

at::Tensor LayerNorm2dImpl::forward(const at::Tensor& x) {
  // Normalise over C in NHWC view; the permutes are free views for channels-last inputs.
  at::Tensor y =
      at::layer_norm(x.permute({0, 2, 3, 1}), {options.channels()}, weight, bias, options.eps());
  return y.permute({0, 3, 1, 2});
}

Downsample2dImpl::Downsample2dImpl(const Downsample2dOptions& o) : pool(o.pool()) {
  if (o.in() != o.out())
    expand = register_module("expand", make_conv(o.in(), o.out(), 1, 1, o.bias()));
}

at::Tensor Downsample2dImpl::forward(const at::Tensor& x) {
  at::Tensor y = pool ? avg_pool_2x2(x) : x;
  return expand ? conv(expand, y) : y;
}

SqueezeExciteImpl::SqueezeExciteImpl(const SqueezeExciteOptions& o) : act(o.act()) {
  fc1 = register_module("fc1", make_conv(o.channels(), o.reduced(), 1, 1, true));
  fc2 = register_module("fc2", make_conv(o.reduced(), o.channels(), 1, 1, true));
}

at::Tensor SqueezeExciteImpl::gate(const at::Tensor& x) {
  return gate_of_mean(spatial_mean(x));
}

at::Tensor SqueezeExciteImpl::gate_of_mean(const at::Tensor& mean) {
  return conv(fc2, activate(conv(fc1, mean), act)).sigmoid();
}

at::Tensor SqueezeExciteImpl::forward(const at::Tensor& x) {
  return x * gate(x);
}

StemImpl::StemImpl(int in_chans, const std::vector<int>& w, const ConvBlockSpec& spec)
    : act(spec.act) {
  conv1 = register_module("conv1", make_conv(in_chans, w.front(), 3, 2));
  norm1 = register_module("norm1", make_bn(w.front(), spec.bn_eps));
  conv2 = register_module("conv2", make_conv(w.front(), w.back(), 3, 1));
}

at::Tensor StemImpl::forward(const at::Tensor& x) {
  return conv(conv2, batch_norm_act(norm1, conv(conv1, x), act));
}

ConvMlpImpl::ConvMlpImpl(const ConvMlpOptions& o) : act(o.act()) {
  fc1 = register_module("fc1", make_conv(o.channels(), o.hidden(), 1, 1, true));
  fc2 = register_module("fc2", make_conv(o.hidden(), o.channels(), 1, 1, true));
}

at::Tensor ConvMlpImpl::forward(const at::Tensor& x) {
  return conv(fc2, activate(conv(fc1, x), act));
}

}  // namespace coatnet::model
