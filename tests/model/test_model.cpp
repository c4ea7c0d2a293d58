// CoAtNet architecture: the paper's shapes and timm's parameter counts for every variant,
// custom layouts, stochastic depth, determinism of eval mode.
#include <ATen/ATen.h>
#include <gtest/gtest.h>
#include <torch/autograd.h>
#include <torch/cuda.h>

#include <algorithm>
#include <cstdio>
#include <functional>
#include <optional>
#include <set>
#include <utility>

#include "model/autograd_graph.h"
#include "model/bn_fold.h"
#include "model/bn_fold_weights.h"
#include "model/bn_gelu.h"
#include "model/coatnet.h"
#include "model/layers.h"
#include "model/transformer.h"
#include "train/precision.h"
#include "train/tiny_spec.h"

using namespace coatnet::model;

namespace {

struct Expected {
  const char* name;
  int64_t params;             // timm's count for the same architecture
  std::vector<int> channels;  // stem, S1..S4
};

const Expected kVariants[] = {
    {"coatnet_0_224", 25036820, {64, 96, 192, 384, 768}},
    {"coatnet_1_224", 42225776, {64, 96, 192, 384, 768}},
    {"coatnet_2_224", 74684744, {128, 128, 256, 512, 1024}},
    {"coatnet_3_224", 166966264, {192, 192, 384, 768, 1536}},
    {"coatnet_4_224", 275425288, {192, 192, 384, 768, 1536}},
    {"coatnet_5_224", 687472008, {192, 256, 512, 1280, 2048}},
    {"coatnet_0_rw_224", 27435562, {64, 96, 192, 384, 768}},
    {"coatnet_nano_rw_224", 15141244, {64, 64, 128, 256, 512}},
};

// Runs stem and each stage, returning every output's shape.
std::vector<std::vector<int64_t>> run_stages(CoAtNet& net, int image_size) {
  at::NoGradGuard no_grad;
  net->eval();
  std::vector<std::vector<int64_t>> out;
  at::Tensor x = net->stem->forward(at::randn({1, 3, image_size, image_size}));
  out.push_back(x.sizes().vec());
  for (auto& stage : *net->stages) {
    x = stage->as<Stage>()->forward(x);
    out.push_back(x.sizes().vec());
  }
  return out;
}

}  // namespace

TEST(Model, ParameterCountsEqualTimm) {
  for (const auto& v : kVariants) {
    CoAtNet net(variant(v.name));
    EXPECT_EQ(count_parameters(*net), v.params) << v.name;
  }
}

TEST(Model, StageShapesAt224And384) {
  for (const auto& v : kVariants) {
    for (int size : {224, 384}) {
      ModelSpec spec = variant(v.name);
      spec.image_size = size;
      CoAtNet net(spec);
      auto shapes = run_stages(net, size);
      auto predicted = stage_shapes(spec);
      ASSERT_EQ(shapes.size(), 5u);
      for (size_t i = 0; i < 5; ++i) {
        int side = size >> (i + 1);  // stem /2, each stage /2 more
        std::vector<int64_t> want{1, v.channels[i], side, side};
        EXPECT_EQ(shapes[i], want) << v.name << " @" << size << " stage " << i;
        EXPECT_EQ(predicted[i].channels, v.channels[i]);
        EXPECT_EQ(predicted[i].height, side);
      }
    }
  }
}

TEST(Model, LogitsShapeAndClasses) {
  ModelSpec spec = variant("coatnet_nano_rw_224");
  spec.num_classes = 10;
  spec.image_size = 64;
  CoAtNet net(spec);
  net->eval();
  at::NoGradGuard no_grad;
  EXPECT_EQ(net->forward(at::randn({3, 3, 64, 64})).sizes(), (at::IntArrayRef{3, 10}));
}

TEST(Model, EvalModeIsDeterministic) {
  ModelSpec spec = variant("coatnet_0_224");
  spec.image_size = 64;
  spec.drop_path = 0.3;
  CoAtNet net(spec);
  net->eval();
  at::NoGradGuard no_grad;
  at::Tensor x = at::randn({2, 3, 64, 64});
  at::Tensor a = net->forward(x), b = net->forward(x);
  EXPECT_TRUE(at::equal(a, b)) << "eval forward must be bit-identical run to run";
}

TEST(Model, StochasticDepthOnlyInTraining) {
  ModelSpec spec = variant("coatnet_0_224");
  spec.image_size = 64;
  spec.drop_path = 0.5;
  CoAtNet net(spec);
  at::NoGradGuard no_grad;
  at::Tensor x = at::randn({8, 3, 64, 64});
  net->train();
  // BatchNorm uses batch statistics in both calls; only the dropped branches differ.
  at::Tensor a = net->forward(x), b = net->forward(x);
  EXPECT_FALSE(at::allclose(a, b)) << "drop_path 0.5 should drop different branches each call";
  spec.drop_path = 0.0;
  CoAtNet plain(spec);
  plain->train();
  EXPECT_TRUE(at::equal(plain->forward(x), plain->forward(x)));
}

namespace {
// Parameters of `spec` without building it whole: blocks after the first in a stage all have
// the same shapes, so count = (every stage of depth 1) + Σ (depth - 1) × (one more block there).
// Lets a test check CoAtNet-6/7 (6 and 10 GB of fp32 weights) in a few seconds.
int64_t count_by_depth(ModelSpec spec) {
  const std::vector<int> depths = spec.depths;
  std::fill(spec.depths.begin(), spec.depths.end(), 1);
  CoAtNet one(spec);
  const int64_t base = count_parameters(*one);
  int64_t total = base;
  for (size_t i = 0; i < depths.size(); ++i) {
    ModelSpec two = spec;
    two.depths[i] = 2;
    CoAtNet net(two);
    total += (depths[i] - 1) * (count_parameters(*net) - base);
  }
  return total;
}
}  // namespace

// CoAtNet-6 and -7 (the paper's appendix: 1.47B and 2.44B parameters; S3 = MBConv blocks, then
// transformer blocks at twice the width and the same resolution).
TEST(Model, PaperCoAtNet6And7ParameterCounts) {
  EXPECT_EQ(count_by_depth(variant("coatnet_5_224")), 687472008) << "the extrapolation is exact";
  for (auto [name, paper] :
       {std::pair{"coatnet_6_224", 1.47e9}, std::pair{"coatnet_7_224", 2.44e9}}) {
    const double n = static_cast<double>(count_by_depth(variant(name)));
    std::printf("%s: %.4fB parameters, the paper's %.2fB (%+.2f%%)\n", name, n / 1e9, paper / 1e9,
                100 * (n / paper - 1));
    EXPECT_NEAR(n / paper, 1.0, 0.01) << name;
  }
}

// A stride-1 stage keeps the resolution; its first block projects the shortcut when the width
// changes (CoAtNet-6/7's transformer part of S3; an MBConv stage alike).
TEST(Model, StrideOneStagesKeepTheResolution) {
  ModelSpec spec = variant("coatnet_7_224");
  spec.depths = {1, 1, 2, 2, 1};
  spec.widths = {16, 32, 48, 64, 64};  // S2 -> S3 and S3 -> S4 change the width
  spec.stem_widths = {16, 16};
  spec.image_size = 64;
  spec.layout = "CCCTT";
  for (const std::vector<int>& strides : {std::vector<int>{2, 2, 2, 1, 2}, {2, 2, 1, 2, 2}}) {
    spec.strides = strides;
    CoAtNet net(spec);
    auto shapes = run_stages(net, 64);
    int side = 32;
    for (size_t i = 0; i < strides.size(); ++i) {
      side /= strides[i];
      EXPECT_EQ(shapes[i + 1], (std::vector<int64_t>{1, spec.widths[i], side, side})) << i;
      EXPECT_EQ(stage_shapes(spec)[i + 1].height, side);
    }
    net->train();
    at::Tensor loss = net->forward(at::randn({2, 3, 64, 64})).square().mean();
    loss.backward();
    for (const auto& p : net->named_parameters())
      EXPECT_TRUE(p.value().grad().defined()) << p.key() << " took no part";
  }
  ModelSpec bad = spec;
  bad.strides = {2, 2, 3, 2, 2};
  EXPECT_THROW(bad.validate(), std::invalid_argument);
  bad.strides = {2, 2};
  EXPECT_THROW(bad.validate(), std::invalid_argument);
}

TEST(Model, CustomLayoutsBuildAndRun) {
  int64_t previous = -1;
  for (const char* layout : {"CCCC", "CCCT", "CCTT", "CTTT"}) {
    ModelSpec spec = coatnet::test::tiny_spec();  // 32 px, 1 channel, 10 classes
    spec.layout = layout;
    spec.depths = {1, 1, 2, 1};
    spec.widths = {32, 64, 96, 128};
    CoAtNet net(spec);
    net->eval();
    at::NoGradGuard no_grad;
    EXPECT_EQ(net->forward(at::randn({2, 1, 32, 32})).sizes(), (at::IntArrayRef{2, 10})) << layout;
    int64_t params = count_parameters(*net);
    EXPECT_NE(params, previous) << layout << " should differ from the previous layout";
    previous = params;
  }
}

TEST(Model, InvalidSpecsNameTheProblem) {
  auto message = [](ModelSpec spec) {
    try {
      spec.validate();
    } catch (const std::invalid_argument& e) {
      return std::string(e.what());
    }
    return std::string("no error");
  };
  ModelSpec bad_layout = variant("coatnet_0_224");
  bad_layout.layout = "CCXT";
  EXPECT_NE(message(bad_layout).find("'X'"), std::string::npos) << message(bad_layout);
  ModelSpec bad_size = variant("coatnet_0_224");
  bad_size.image_size = 100;
  EXPECT_NE(message(bad_size).find("image_size 100"), std::string::npos) << message(bad_size);
  ModelSpec bad_depths = variant("coatnet_0_224");
  bad_depths.depths = {2, 2};
  EXPECT_NE(message(bad_depths).find("depths has 2 entries"), std::string::npos);
  ModelSpec bad_width = variant("coatnet_0_224");
  bad_width.widths = {96, 192, 380, 768};
  EXPECT_NE(message(bad_width).find("width 380"), std::string::npos) << message(bad_width);
  EXPECT_THROW(variant("coatnet_9_224"), std::invalid_argument);
}

TEST(Model, MacsGrowWithImageArea) {
  ModelSpec spec = variant("coatnet_0_224");
  CoAtNet net224(spec);
  int64_t macs224 = count_macs(net224);
  // The paper reports 4.2 GFLOPs (multiply-adds) for CoAtNet-0 at 224.
  EXPECT_GT(macs224, 4.0e9);
  EXPECT_LT(macs224, 4.8e9);
  spec.image_size = 448;
  CoAtNet net448(spec);
  // Convolutions scale with area (x4), attention with area squared: more than x4 in total.
  EXPECT_GT(count_macs(net448), 4 * macs224);
}

// Stochastic depth and the head's dropout give each row of the global batch the same mask
// however the batch is split across ranks: W = 1, 2, 3 slices of 12 rows drawn after the same
// seed reproduce the one-process masks row for row (what makes a resume at another world size
// exact with model.drop_path and model.drop_rate on).
TEST(GlobalBatchRows, MasksOfARowDoNotDependOnTheSplit) {
  const int64_t global = 12;
  const at::Tensor ones = at::ones({global, 3, 2, 2});
  const at::Tensor feats = at::ones({global, 5});
  at::manual_seed(99);
  const at::Tensor whole = drop_path(ones, 0.5, true);
  const at::Tensor whole_dropout = row_dropout(feats, 0.3, true);
  EXPECT_GT(whole.eq(0).sum().item<int64_t>(), 0) << "no sample dropped: a weak test";
  EXPECT_LT(whole.eq(0).sum().item<int64_t>(), ones.numel()) << "every sample dropped";
  for (int64_t world : {1, 2, 3}) {
    const int64_t rows = global / world;
    for (int64_t rank = 0; rank < world; ++rank) {
      at::manual_seed(99);
      GlobalBatchRows mine(global, rank * rows);
      const at::Tensor part = drop_path(ones.narrow(0, 0, rows), 0.5, true);
      const at::Tensor part_dropout = row_dropout(feats.narrow(0, 0, rows), 0.3, true);
      EXPECT_TRUE(at::equal(part, whole.narrow(0, rank * rows, rows)))
          << "drop_path, rank " << rank << " of " << world;
      EXPECT_TRUE(at::equal(part_dropout, whole_dropout.narrow(0, rank * rows, rows)))
          << "dropout, rank " << rank << " of " << world;
    }
  }
  EXPECT_THROW(
      {
        GlobalBatchRows bad(global, 10);
        drop_path(ones.narrow(0, 0, 4), 0.5, true);
      },
      std::logic_error);
}

// A channels-last feature map leaves the attention channels-last, as every other layer leaves
// it, with the same values as from an NCHW input (which stays NCHW).
TEST(Model, AttentionKeepsAChannelsLastInputChannelsLast) {
  torch::manual_seed(3);
  TransformerBlockSpec spec;
  Attention2d attn(64, 64, 4, 4, spec);
  at::Tensor nchw = at::randn({2, 64, 4, 4});
  at::Tensor nhwc = nchw.contiguous(at::MemoryFormat::ChannelsLast).requires_grad_();
  at::Tensor y = attn->forward(nhwc);
  EXPECT_TRUE(y.is_contiguous(at::MemoryFormat::ChannelsLast)) << y.strides();
  EXPECT_TRUE(at::allclose(y, attn->forward(nchw), 1e-5, 1e-6));
  y.square().sum().backward();
  EXPECT_TRUE(nhwc.grad().is_contiguous(at::MemoryFormat::ChannelsLast)) << nhwc.grad().strides();
  EXPECT_TRUE(attn->forward(nchw).is_contiguous()) << "an NCHW input stays NCHW";
}

// train.attention: a backend other than auto is the only one scaled_dot_product_attention may
// take. On a CPU the GPU's backends are then refused (which shows the setting reached ATen), math
// computes what ATen's own choice does, and ATen's flags are as before once the scope ends.
TEST(Model, SdpaBackendScopeAllowsThatBackendAlone) {
  torch::manual_seed(5);
  TransformerBlockSpec spec;
  Attention2d attn(32, 32, 4, 4, spec);
  const at::Tensor x = at::randn({2, 32, 4, 4});
  at::Context& c = at::globalContext();
  auto flags = [&] {
    return std::vector<bool>{c.userEnabledFlashSDP(), c.userEnabledMemEfficientSDP(),
                             c.userEnabledCuDNNSDP(), c.userEnabledMathSDP()};
  };
  const std::vector<bool> atens = flags();
  const at::Tensor y = attn->forward(x);
  {
    SdpaBackendScope math(SdpaBackend::kMath);
    EXPECT_EQ(flags(), (std::vector<bool>{false, false, false, true}));
    EXPECT_TRUE(at::allclose(attn->forward(x), y, 1e-5, 1e-6));
  }
  for (SdpaBackend gpu_only : {SdpaBackend::kEfficient, SdpaBackend::kCudnn}) {
    SdpaBackendScope only(gpu_only);
    EXPECT_THROW(attn->forward(x), c10::Error) << "a GPU backend alone ran on the CPU";
  }
  EXPECT_EQ(flags(), atens);
  EXPECT_TRUE(at::equal(attn->forward(x), y));
}

// The squeeze-excitation's mean passes its gradient back in the input's layout (autograd's own
// is NCHW, which then met the channels-last gradient of the gate's multiply in an add ATen
// cannot vectorise), with the values of autograd's mean.
TEST(Model, SpatialMeanGradientKeepsTheInputLayout) {
  torch::manual_seed(4);
  for (auto format : {at::MemoryFormat::ChannelsLast, at::MemoryFormat::Contiguous}) {
    at::Tensor x = at::randn({2, 8, 5, 3}).contiguous(format).requires_grad_();
    at::Tensor ref = x.detach().clone().requires_grad_();
    at::Tensor w = at::randn({2, 8, 1, 1});
    at::Tensor y = spatial_mean(x);
    EXPECT_TRUE(at::allclose(y, ref.mean({2, 3}, true), 1e-6, 1e-7));
    // autograd::grad hands over the gradient as computed (a leaf's .grad would be re-laid out
    // to the leaf's strides).
    const at::Tensor g = torch::autograd::grad({(y * w).sum()}, {x})[0];
    const at::Tensor g_ref = torch::autograd::grad({(ref.mean({2, 3}, true) * w).sum()}, {ref})[0];
    EXPECT_TRUE(g.is_contiguous(format)) << g.strides();
    EXPECT_TRUE(at::allclose(g, g_ref, 1e-6, 1e-7));
  }
}

// pointwise_conv_gemm is a 1x1 convolution, forward and backward (the gradients of the input, the
// weight and the bias), with and without a bias, and its output and input gradient stay
// channels-last.
TEST(Model, PointwiseGemmEqualsTheConvolutionAndKeepsChannelsLast) {
  torch::manual_seed(6);
  for (bool with_bias : {true, false}) {
    at::Tensor x = at::randn({2, 24, 5, 7}).contiguous(at::MemoryFormat::ChannelsLast);
    x.requires_grad_();
    at::Tensor w = at::randn({40, 24, 1, 1}).requires_grad_();
    at::Tensor b = with_bias ? at::randn({40}).requires_grad_() : at::Tensor();
    const at::Tensor dy = at::randn({2, 40, 5, 7}).contiguous(at::MemoryFormat::ChannelsLast);
    const at::Tensor y = pointwise_conv_gemm(x, w, b), ref = at::conv2d(x, w, b);
    EXPECT_TRUE(y.is_contiguous(at::MemoryFormat::ChannelsLast)) << y.strides();
    EXPECT_TRUE(at::allclose(y, ref, 1e-5, 1e-5));
    std::vector<at::Tensor> inputs{x, w};
    if (with_bias) inputs.push_back(b);
    const auto g = torch::autograd::grad({y}, inputs, {dy});
    const auto g_ref = torch::autograd::grad({ref}, inputs, {dy});
    for (size_t i = 0; i < g.size(); ++i)
      EXPECT_TRUE(at::allclose(g[i], g_ref[i], 1e-4, 1e-4)) << "gradient " << i;
    EXPECT_TRUE(g[0].is_contiguous(at::MemoryFormat::ChannelsLast)) << g[0].strides();
  }
}

namespace {
using coatnet::test::graph_count;
using coatnet::test::graph_has;

// One training step of a CoAtNet from `seed`: 4 random images in `format`, the loss the logits'
// logsumexp summed, under bf16 autocast on the CPU when asked. Returns the loss, then every
// parameter's gradient and every buffer (the running statistics), by name; `inspect` sees the
// loss before backward.
using Named = std::vector<std::pair<std::string, at::Tensor>>;
Named coatnet_step(const ModelSpec& spec, at::MemoryFormat format, uint64_t seed, bool bf16 = false,
                   const std::function<void(const at::Tensor&)>& inspect = {}) {
  torch::manual_seed(seed);
  CoAtNet net(spec);
  const at::Tensor x =
      at::randn({4, spec.in_chans, spec.image_size, spec.image_size}).contiguous(format);
  at::Tensor loss;
  {
    std::optional<coatnet::train::AutocastScope> low;
    if (bf16) low.emplace(at::kCPU, at::kBFloat16);
    loss = net->forward(x).to(at::kFloat).logsumexp(1).sum();
  }
  if (inspect) inspect(loss);
  loss.backward();
  Named r{{"loss", loss.detach()}};
  for (const auto& p : net->named_parameters()) r.emplace_back(p.key(), p.value().grad().clone());
  for (const auto& b : net->named_buffers()) r.emplace_back(b.key(), b.value().clone());
  return r;
}

// Every result of two steps alike, to `rtol`/`atol`.
void expect_close(const Named& a, const Named& b, double rtol, double atol) {
  ASSERT_EQ(a.size(), b.size());
  for (size_t i = 0; i < a.size(); ++i)
    EXPECT_TRUE(at::allclose(a[i].second.to(at::kDouble), b[i].second.to(at::kDouble), rtol, atol))
        << a[i].first << ": "
        << (a[i].second.to(at::kDouble) - b[i].second.to(at::kDouble)).abs().max();
}
}  // namespace

// conv() takes the matrix product only where it is asked for (train.pointwise_gemm) and applies:
// a 1x1 convolution of stride 1 in one group on a channels-last input; and a channels-last
// CoAtNet step is the same either way.
TEST(Model, ConvTakesThePointwiseGemmWhereItApplies) {
  auto via_gemm = [](torch::nn::Conv2d c, const at::Tensor& x) {
    return conv(c, x).grad_fn()->name().find("Convolution") == std::string::npos;
  };
  const at::Tensor cl = at::randn({2, 8, 6, 6}).contiguous(at::MemoryFormat::ChannelsLast);
  torch::nn::Conv2d one = make_conv(8, 16, 1, 1, true);
  EXPECT_FALSE(via_gemm(one, cl)) << "not asked for";
  {
    PointwiseGemmScope scope(true);
    EXPECT_TRUE(via_gemm(one, cl));
    EXPECT_FALSE(via_gemm(one, cl.contiguous())) << "NCHW input";
    EXPECT_FALSE(via_gemm(make_conv(8, 16, 1, 2, true), cl)) << "stride 2";
    EXPECT_FALSE(via_gemm(make_conv(8, 16, 3, 1, true), cl)) << "3x3";
    EXPECT_FALSE(via_gemm(make_conv(8, 8, 1, 1, true, 2), cl)) << "two groups";
  }
  EXPECT_FALSE(pointwise_gemm()) << "the scope's end turns it off";

  ModelSpec spec = coatnet::test::tiny_spec();
  spec.in_chans = 3;  // one channel would be NCHW as well as channels-last, and stay NCHW
  auto step = [&](bool gemm) {
    std::optional<PointwiseGemmScope> scope;
    if (gemm) scope.emplace(true);
    return coatnet_step(spec, at::MemoryFormat::ChannelsLast, 3);
  };
  expect_close(step(true), step(false), 1e-4, 1e-5);
}

// gated_pointwise_conv is conv(c, x * gate), forward and backward (the gradients of x, the gate,
// the weight and the bias), in both layouts, with and without a bias; the output and x's gradient
// keep x's layout.
TEST(Model, SeFoldEqualsTheGateThenTheConvolution) {
  torch::manual_seed(7);
  for (auto format : {at::MemoryFormat::ChannelsLast, at::MemoryFormat::Contiguous})
    for (bool with_bias : {true, false}) {
      torch::nn::Conv2d c = make_conv(24, 40, 1, 1, with_bias);
      at::Tensor x = at::randn({3, 24, 5, 7}).contiguous(format).requires_grad_();
      at::Tensor gate = at::rand({3, 24, 1, 1}).requires_grad_();
      const at::Tensor dy = at::randn({3, 40, 5, 7}).contiguous(format);
      const at::Tensor y = gated_pointwise_conv(c, x, gate), ref = c->forward(x * gate);
      EXPECT_TRUE(y.is_contiguous(format)) << y.strides();
      EXPECT_TRUE(at::allclose(y, ref, 1e-5, 1e-5));
      std::vector<at::Tensor> inputs{x, gate, c->weight};
      if (with_bias) inputs.push_back(c->bias);
      const auto g = torch::autograd::grad({y}, inputs, {dy});
      const auto g_ref = torch::autograd::grad({ref}, inputs, {dy});
      for (size_t i = 0; i < g.size(); ++i)
        EXPECT_TRUE(at::allclose(g[i], g_ref[i], 1e-4, 1e-4)) << "gradient " << i;
      EXPECT_TRUE(g[0].is_contiguous(format)) << g[0].strides();
    }
}

// The MBConv blocks fold their gate only where asked (train.se_fold) and the projection applies;
// a CoAtNet step (loss and every parameter's gradient) is the same either way, in both layouts.
TEST(Model, MbConvFoldsTheSeGateWhereAsked) {
  const at::Tensor cl = at::randn({2, 8, 6, 6}).contiguous(at::MemoryFormat::ChannelsLast);
  torch::nn::Conv2d one = make_conv(8, 16, 1, 1, true);
  EXPECT_FALSE(takes_se_fold(*one, cl)) << "not asked for";
  {
    SeFoldScope scope(true);
    EXPECT_TRUE(takes_se_fold(*one, cl));
    EXPECT_TRUE(takes_se_fold(*one, cl.contiguous()));
    EXPECT_FALSE(takes_se_fold(*make_conv(8, 16, 1, 2, true), cl)) << "stride 2";
    EXPECT_FALSE(takes_se_fold(*make_conv(8, 16, 3, 1, true), cl)) << "3x3";
    EXPECT_FALSE(takes_se_fold(*make_conv(8, 8, 1, 1, true, 2), cl)) << "two groups";
    EXPECT_FALSE(takes_se_fold(*one, cl.transpose(2, 3))) << "neither layout";
  }
  EXPECT_FALSE(se_fold()) << "the scope's end turns it off";

  ModelSpec spec = coatnet::test::tiny_spec();
  spec.in_chans = 3;  // one channel would be NCHW as well as channels-last, and stay NCHW
  for (auto format : {at::MemoryFormat::ChannelsLast, at::MemoryFormat::Contiguous}) {
    auto step = [&](bool fold) {
      std::optional<SeFoldScope> scope;
      if (fold) scope.emplace(true);
      return coatnet_step(spec, format, 3, false, [&](const at::Tensor& loss) {
        EXPECT_EQ(graph_has(loss, "BaddbmmBackward"), fold);
      });
    };
    expect_close(step(true), step(false), 1e-4, 1e-5);
  }
}

// The MBConv's BatchNorm + GELU before its squeeze-excitation takes the gate's spatial mean only
// where asked (train.cuda_kernels: bn_gelu_se_mean) and fused kernels are registered: the block
// then has no SpatialMean node of its own (the head's stays). A CoAtNet step is the same either
// way, with the gate folded or not, in both layouts (the reference kernels, on CPU).
TEST(Model, MbConvTakesTheSeMeanIntoBnGeluWhereAsked) {
  ModelSpec spec = coatnet::test::tiny_spec();
  spec.in_chans = 3;
  const int mbconv_blocks = spec.depths[0] + spec.depths[1];  // CCTT
  for (auto format : {at::MemoryFormat::ChannelsLast, at::MemoryFormat::Contiguous})
    for (bool fold : {false, true}) {
      std::optional<SeFoldScope> fold_scope;
      if (fold) fold_scope.emplace(true);
      BnGeluKernelsScope kernels(&bn_gelu_reference());
      auto step = [&](bool se_mean) {
        std::optional<BnGeluSeMeanScope> scope;
        if (se_mean) scope.emplace(true);
        return coatnet_step(spec, format, 3, false, [&](const at::Tensor& loss) {
          EXPECT_EQ(graph_count(loss, "SpatialMean"), se_mean ? 1 : 1 + mbconv_blocks)
              << "fold " << fold;
          EXPECT_TRUE(graph_has(loss, "BnGelu"));
        });
      };
      expect_close(step(true), step(false), 1e-4, 1e-5);
    }
  EXPECT_FALSE(bn_gelu_se_mean()) << "the scope's end turns it off";
  // Without kernels nothing is fused, asked or not.
  BnGeluSeMeanScope scope(true);
  coatnet_step(spec, at::MemoryFormat::ChannelsLast, 3, false, [&](const at::Tensor& loss) {
    EXPECT_EQ(graph_count(loss, "SpatialMean"), 1 + mbconv_blocks);
    EXPECT_FALSE(graph_has(loss, "BnGelu"));
  });
}

namespace {
// A training BatchNorm with parameters and running statistics away from their defaults.
torch::nn::BatchNorm2d random_bn(int c) {
  torch::nn::BatchNorm2d bn = make_bn(c, 1e-5);
  at::NoGradGuard no_grad;
  bn->weight.uniform_(0.5, 1.5);
  bn->bias.normal_();
  bn->running_mean.normal_();
  bn->running_var.uniform_(0.5, 2);
  return bn;
}
}  // namespace

// bn_conv_bn is norm1(conv(pre_norm(x))) in training: the output, the gradients of x and of every
// parameter (the pre-norm's bias and the convolution's bias get BatchNorm's 0), and both
// BatchNorms' running statistics; on an input whose mean is far from 0, with and without the
// convolution's bias; under bf16 autocast, a bf16 output within bf16's rounding.
TEST(Model, BnFoldEqualsTheBatchNormsAroundTheConvolution) {
  torch::manual_seed(8);
  for (bool with_bias : {true, false}) {
    torch::nn::BatchNorm2d bn0 = random_bn(8), bn1 = random_bn(24);
    torch::nn::Conv2d c = make_conv(8, 24, 1, 1, with_bias);
    torch::nn::BatchNorm2d ref0{bn0->options}, ref1{bn1->options};
    torch::nn::Conv2d ref_c = make_conv(8, 24, 1, 1, with_bias);
    for (auto [a, b] : {std::pair<torch::nn::Module*, torch::nn::Module*>{ref0.get(), bn0.get()},
                        {ref1.get(), bn1.get()},
                        {ref_c.get(), c.get()}}) {
      at::NoGradGuard no_grad;
      auto pa = a->named_parameters(), pb = b->named_parameters();
      for (const auto& p : pb) pa[p.key()].copy_(p.value());
      auto ba = a->named_buffers(), bb = b->named_buffers();
      for (const auto& v : bb) ba[v.key()].copy_(v.value());
    }
    at::Tensor x = (at::randn({3, 8, 5, 6}) * 2 + 3).contiguous(at::MemoryFormat::ChannelsLast);
    x.requires_grad_();
    const at::Tensor dy = at::randn({3, 24, 5, 6}).contiguous(at::MemoryFormat::ChannelsLast);
    {
      BnFoldScope fold(BnFold::kEvery);
      ASSERT_TRUE(takes_bn_fold(*bn0, *c, *bn1, x));
    }
    const at::Tensor y = bn_conv_bn(*bn0, *c, *bn1, x);
    const at::Tensor ref = ref1->forward(ref_c->forward(ref0->forward(x)));
    EXPECT_TRUE(y.is_contiguous(at::MemoryFormat::ChannelsLast)) << y.strides();
    EXPECT_TRUE(at::allclose(y, ref, 1e-4, 1e-4)) << (y - ref).abs().max();
    std::vector<at::Tensor> mine{x, bn0->weight, bn0->bias, c->weight, bn1->weight, bn1->bias};
    std::vector<at::Tensor> theirs{x,         ref0->weight, ref0->bias, ref_c->weight, ref1->weight,
                                   ref1->bias};
    if (with_bias) mine.push_back(c->bias), theirs.push_back(ref_c->bias);
    const auto g = torch::autograd::grad({y}, mine, {dy});
    const auto g_ref = torch::autograd::grad({ref}, theirs, {dy});
    for (size_t i = 0; i < g.size(); ++i)
      EXPECT_TRUE(at::allclose(g[i], g_ref[i], 1e-3, 1e-4))
          << "gradient " << i << ": " << (g[i] - g_ref[i]).abs().max();
    for (auto [a, b] :
         {std::pair<torch::nn::BatchNorm2d, torch::nn::BatchNorm2d>{bn0, ref0}, {bn1, ref1}}) {
      EXPECT_TRUE(at::allclose(a->running_mean, b->running_mean, 1e-4, 1e-5));
      EXPECT_TRUE(at::allclose(a->running_var, b->running_var, 1e-4, 1e-5));
      EXPECT_TRUE(at::equal(a->num_batches_tracked, b->num_batches_tracked));
    }
    {
      // bf16 autocast, on a bf16 input (as in training) whose mean is 10 standard deviations
      // from 0: the statistics must be summed in float32 (bf16 second moments are off by 20%).
      const at::Tensor far = (at::randn({3, 8, 5, 6}) * 2 + 20)
                                 .to(at::kBFloat16)
                                 .contiguous(at::MemoryFormat::ChannelsLast);
      const at::Tensor far_ref = ref1->forward(ref_c->forward(ref0->forward(far.to(at::kFloat))));
      at::Tensor low;
      {
        coatnet::train::AutocastScope bf16(at::kCPU, at::kBFloat16);
        low = bn_conv_bn(*bn0, *c, *bn1, far);
      }
      EXPECT_EQ(low.scalar_type(), at::kBFloat16);
      EXPECT_TRUE(at::allclose(low.to(at::kFloat), far_ref, 3e-2, 3e-2))
          << (low.to(at::kFloat) - far_ref).abs().max();
    }
  }
}

// fold_weights' written-out gradient against autograd through the same formulas, in float64:
// with the mean far from 0 (in training the centred input's is near 0, which hides a term of the
// mean's gradient from the comparison with the composite above), second moments that are not
// quite symmetric, and with and without a convolution bias, whose gradient and β0's are 0.
TEST(Model, FoldWeightsGradientIsTheChainRule) {
  torch::manual_seed(3);
  const auto f64 = at::TensorOptions().dtype(at::kDouble);
  const int64_t c = 5, o = 7;
  auto leaf = [](const at::Tensor& t) { return t.detach().requires_grad_(); };
  for (bool with_bias : {true, false}) {
    const at::Tensor a = at::randn({40, c}, f64);
    const at::Tensor second = leaf(a.t().mm(a) / 40 + 0.01 * at::randn({c, c}, f64));
    const at::Tensor mean = leaf(at::randn({c}, f64) * 0.5);
    FoldParameters p;
    p.weight = leaf(at::randn({o, c}, f64));
    p.gamma0 = leaf(at::rand({c}, f64) + 0.5);
    p.beta0 = leaf(at::randn({c}, f64));
    p.gamma1 = leaf(at::rand({o}, f64) + 0.5);
    p.beta1 = leaf(at::randn({o}, f64));
    if (with_bias) p.conv_bias = leaf(at::randn({o}, f64));
    p.eps0 = 1e-3;
    p.eps1 = 1e-2;
    const FoldedWeights f = fold_weights(second, mean, p, at::kDouble);
    // The same arithmetic, differentiated by autograd.
    const at::Tensor cov = second - at::outer(mean, mean);
    const at::Tensor var0 = cov.diagonal().clamp_min(0);
    const at::Tensor w1 = p.weight * (p.gamma0 * (var0 + p.eps0).rsqrt());
    const at::Tensor var1 = (at::mm(w1, cov) * w1).sum(1).clamp_min(0);
    const at::Tensor a1 = p.gamma1 * (var1 + p.eps1).rsqrt();
    const at::Tensor folded = w1 * a1.unsqueeze(1);
    const at::Tensor bias = p.beta1 - a1 * at::mv(w1, mean);
    EXPECT_TRUE(at::allclose(f.weight, folded, 1e-12, 1e-12));
    EXPECT_TRUE(at::allclose(f.bias, bias, 1e-12, 1e-12));
    EXPECT_TRUE(at::allclose(f.var0, var0, 1e-12, 1e-12));
    EXPECT_TRUE(at::allclose(f.var1, var1, 1e-12, 1e-12));
    const at::Tensor dw = at::randn({o, c}, f64), db = at::randn({o}, f64);
    const std::vector<at::Tensor> in{second, mean, p.weight, p.gamma0, p.gamma1, p.beta1};
    const auto mine = torch::autograd::grad({f.weight, f.bias}, in, {dw, db}, true);
    const auto ref = torch::autograd::grad({folded, bias}, in, {dw, db});
    for (size_t i = 0; i < in.size(); ++i)
      EXPECT_TRUE(at::allclose(mine[i], ref[i], 1e-9, 1e-12))
          << "input " << i << ": " << (mine[i] - ref[i]).abs().max();
    std::vector<at::Tensor> zero{p.beta0};
    if (with_bias) zero.push_back(p.conv_bias);
    for (const at::Tensor& g : torch::autograd::grad({f.weight, f.bias}, zero, {dw, db})) {
      ASSERT_TRUE(g.defined());
      EXPECT_TRUE(at::equal(g, at::zeros_like(g)));
    }
  }
}

// The MBConv blocks fold their BatchNorms only where asked (train.bn_fold) and it applies:
// training, channels-last, no BatchNorm override; a channels-last CoAtNet step (the loss, every
// parameter's gradient and the running statistics) is the same either way.
TEST(Model, MbConvFoldsItsBatchNormsWhereAsked) {
  torch::nn::BatchNorm2d bn0 = make_bn(8, 1e-5), bn1 = make_bn(16, 1e-5);
  torch::nn::Conv2d one = make_conv(8, 16, 1, 1);
  const at::Tensor cl = at::randn({2, 8, 6, 6}).contiguous(at::MemoryFormat::ChannelsLast);
  EXPECT_FALSE(takes_bn_fold(*bn0, *one, *bn1, cl)) << "not asked for";
  {
    BnFoldScope scope(BnFold::kEvery);
    EXPECT_TRUE(takes_bn_fold(*bn0, *one, *bn1, cl));
    EXPECT_FALSE(takes_bn_fold(*bn0, *one, *bn1, cl.contiguous())) << "NCHW input";
    EXPECT_FALSE(takes_bn_fold(*bn0, *make_conv(8, 16, 1, 2), *bn1, cl)) << "stride 2";
    EXPECT_FALSE(takes_bn_fold(*bn0, *make_conv(8, 16, 3, 1), *bn1, cl)) << "3x3";
    bn1->eval();
    EXPECT_FALSE(takes_bn_fold(*bn0, *one, *bn1, cl)) << "evaluation";
    bn1->train();
    set_batch_norm_override(
        [](torch::nn::BatchNorm2dImpl& bn, const at::Tensor& x) { return bn.forward(x); });
    EXPECT_FALSE(takes_bn_fold(*bn0, *one, *bn1, cl)) << "SyncBatchNorm";
    set_batch_norm_override(nullptr);
  }
  EXPECT_EQ(bn_fold(), BnFold::kOff) << "the scope's end turns it off";
  {
    // kWide (a GPU's default): only an expansion more than 4x as wide as its input.
    BnFoldScope scope(BnFold::kWide);
    torch::nn::BatchNorm2d bn32 = make_bn(32, 1e-5), bn40 = make_bn(40, 1e-5);
    EXPECT_FALSE(takes_bn_fold(*bn0, *one, *bn1, cl)) << "8 -> 16";
    EXPECT_FALSE(takes_bn_fold(*bn0, *make_conv(8, 32, 1, 1), *bn32, cl)) << "8 -> 32";
    EXPECT_TRUE(takes_bn_fold(*bn0, *make_conv(8, 40, 1, 1), *bn40, cl)) << "8 -> 40";
  }

  ModelSpec spec = coatnet::test::tiny_spec();
  spec.in_chans = 3;  // one channel would be NCHW as well as channels-last, and stay NCHW
  auto step = [&](bool fold) {
    std::optional<BnFoldScope> scope;
    if (fold) scope.emplace(BnFold::kEvery);
    return coatnet_step(
        spec, at::MemoryFormat::ChannelsLast, 3, false,
        [&](const at::Tensor& loss) { EXPECT_EQ(graph_has(loss, "CentredMoments"), fold); });
  };
  expect_close(step(true), step(false), 1e-3, 1e-4);
}

// avg_pool_2x2 is ATen's 2×2 average pooling, forward and backward bit for bit, and its gradient
// keeps the input's memory format; odd sizes take ATen's own (which drops the last row/column).
TEST(Model, AvgPool2x2EqualsAtenAndKeepsTheLayout) {
  torch::manual_seed(5);
  for (auto format : {at::MemoryFormat::ChannelsLast, at::MemoryFormat::Contiguous})
    for (auto dtype : {at::kFloat, at::kBFloat16}) {
      at::Tensor x = at::randn({2, 8, 6, 4}).to(dtype).contiguous(format).requires_grad_();
      at::Tensor dy = at::randn({2, 8, 3, 2}).to(dtype).contiguous(format);
      const at::Tensor y = avg_pool_2x2(x), ref = at::avg_pool2d(x, {2, 2}, {2, 2});
      EXPECT_TRUE(at::equal(y, ref));
      const at::Tensor g = torch::autograd::grad({y}, {x}, {dy})[0];
      const at::Tensor g_ref = torch::autograd::grad({ref}, {x}, {dy})[0];
      EXPECT_TRUE(at::equal(g, g_ref)) << c10::toString(dtype);
      EXPECT_TRUE(g.is_contiguous(format)) << g.strides();
    }
  at::Tensor odd = at::randn({1, 3, 5, 4}, at::requires_grad());
  EXPECT_EQ(avg_pool_2x2(odd).sizes(), (at::IntArrayRef{1, 3, 2, 2}));
}

// On a GPU under bf16 autocast (where the moments take the mixed-precision batched product and
// the products run on cuBLAS), bn_conv_bn and gated_pointwise_conv against their composites in
// float32: the output and the gradients of x and the weights within bf16's rounding (max
// difference against max value), on an input 2.5 standard deviations from 0.
TEST(Model, FoldsMatchTheCompositeOnGpu) {
  if (!torch::cuda::is_available()) GTEST_SKIP() << "no GPU visible: the folds' GPU path needs one";
  torch::manual_seed(12);
  const at::Device gpu(at::kCUDA, 0);
  auto off = [](const at::Tensor& a, const at::Tensor& b) {
    return ((a.to(at::kFloat) - b).abs().max() / b.abs().max()).item<double>();
  };
  auto low = [](const std::function<at::Tensor()>& f) {
    coatnet::train::AutocastScope bf16(at::kCUDA, at::kBFloat16);
    return f();
  };
  torch::nn::BatchNorm2d bn0 = random_bn(64), bn1 = random_bn(256);
  torch::nn::Conv2d expand = make_conv(64, 256, 1, 1), project = make_conv(256, 64, 1, 1, true);
  for (torch::nn::Module* m :
       {static_cast<torch::nn::Module*>(bn0.get()), static_cast<torch::nn::Module*>(bn1.get()),
        static_cast<torch::nn::Module*>(expand.get()),
        static_cast<torch::nn::Module*>(project.get())})
    m->to(gpu);
  const at::Tensor x = (at::randn({8, 64, 28, 28}, gpu) * 2 + 5)
                           .to(at::kBFloat16)
                           .contiguous(at::MemoryFormat::ChannelsLast)
                           .requires_grad_();
  const at::Tensor x32 = x.detach().to(at::kFloat).requires_grad_();
  const at::Tensor dz = at::randn({8, 256, 28, 28}, gpu).contiguous(at::MemoryFormat::ChannelsLast);
  const at::Tensor z = low([&] { return bn_conv_bn(*bn0, *expand, *bn1, x); });
  EXPECT_EQ(z.scalar_type(), at::kBFloat16);
  const at::Tensor ref = bn1->forward(expand->forward(bn0->forward(x32)));
  EXPECT_LT(off(z, ref), 3e-2);
  const auto g = torch::autograd::grad({z}, {x, expand->weight, bn1->weight}, {dz.to(z.dtype())});
  const auto g_ref = torch::autograd::grad({ref}, {x32, expand->weight, bn1->weight}, {dz});
  for (size_t i = 0; i < g.size(); ++i) EXPECT_LT(off(g[i], g_ref[i]), 3e-2) << "gradient " << i;

  const at::Tensor h = at::randn({8, 256, 28, 28}, gpu)
                           .to(at::kBFloat16)
                           .contiguous(at::MemoryFormat::ChannelsLast)
                           .requires_grad_();
  const at::Tensor h32 = h.detach().to(at::kFloat).requires_grad_();
  const at::Tensor gate = at::rand({8, 256, 1, 1}, gpu).requires_grad_();
  const at::Tensor y = low([&] { return gated_pointwise_conv(project, h, gate); });
  const at::Tensor y_ref = project->forward(h32 * gate);
  EXPECT_LT(off(y, y_ref), 3e-2);
  const at::Tensor dy = at::randn_like(y_ref);
  const auto gy = torch::autograd::grad({y}, {h, gate, project->weight}, {dy.to(y.dtype())});
  const auto gy_ref = torch::autograd::grad({y_ref}, {h32, gate, project->weight}, {dy});
  for (size_t i = 0; i < gy.size(); ++i) EXPECT_LT(off(gy[i], gy_ref[i]), 3e-2) << "gradient " << i;
}

// At coatnet_0's widths (64 px, batch 4), a training step with every opt-in of the model's
// arithmetic (train.pointwise_gemm, train.se_fold, train.bn_fold) gives the composite's loss,
// gradients and running variances: in float32 to float32's rounding, and under bf16 autocast no
// further from the float32 step than the composite's own bf16 step is (per parameter, the max
// difference against the parameter's largest gradient).
TEST(Model, OptInsAgreeWithTheCompositeAtCoatNet0Widths) {
  ModelSpec spec = variant("coatnet_0_224");
  spec.image_size = 64;
  auto step = [&](bool opt_in, bool bf16) {
    std::optional<PointwiseGemmScope> gemm;
    std::optional<SeFoldScope> se;
    std::optional<BnFoldScope> bn;
    if (opt_in) gemm.emplace(true), se.emplace(true), bn.emplace(BnFold::kEvery);
    return coatnet_step(spec, at::MemoryFormat::ChannelsLast, 11, bf16);
  };
  // Per parameter: max |a - b| / max |reference|.
  auto error = [](const at::Tensor& a, const at::Tensor& b, const at::Tensor& reference) {
    const double scale = reference.abs().max().item<double>();
    return (a - b).abs().max().item<double>() / std::max(scale, 1e-30);
  };
  const Named exact = step(false, false), exact_opt = step(true, false);
  const Named low = step(false, true), low_opt = step(true, true);
  for (size_t i = 0; i < exact.size(); ++i) {
    const std::string& name = exact[i].first;
    // The pre-norm's bias feeds norm1 through a linear map, which cancels it: its gradient is 0,
    // exactly 0 folded and rounding noise in the composite.
    if (name.find("pre_norm.bias") != std::string::npos) {
      EXPECT_TRUE(at::equal(low_opt[i].second, at::zeros_like(low_opt[i].second))) << name;
      continue;
    }
    // A running mean starts near 0 (norm1's input has mean W·β0, and β0 starts at 0), where a
    // difference against its own largest value says nothing; MbConvFoldsItsBatchNormsWhereAsked
    // compares the running statistics with an absolute tolerance.
    if (name.find("running_mean") != std::string::npos) continue;
    EXPECT_LT(error(exact_opt[i].second, exact[i].second, exact[i].second), 2e-4) << name;
    const double composite = error(low[i].second, exact[i].second, exact[i].second);
    const double opt_in = error(low_opt[i].second, exact[i].second, exact[i].second);
    EXPECT_LT(opt_in, 2 * composite + 1e-2) << name << ": bf16 composite " << composite;
  }
}
