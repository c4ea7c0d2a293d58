// Each kernel of src/cuda, and each opt-in of the model's arithmetic (train.pointwise_gemm,
// train.se_fold, train.bn_fold), against the ATen composite it replaces, on the GPU, in one run:
// median milliseconds over repeated launches (after a warm-up), the achieved bandwidth of the
// bytes the kernel must move, and the speed-up. One JSON object per kernel (and shape), then one
// line {"kernels": [...]} holding them all; exit 77 (skipped, with the reason) without a GPU or
// without the kernels.
//   bench_kernels [--batch 128] [--size 224]
#include <ATen/ATen.h>
#include <torch/autograd.h>
#include <torch/cuda.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include "cuda/batch_prep.h"
#include "cuda/bn_gelu.h"
#include "cuda/dw_conv.h"
#include "data/mixup.h"
#include "model/bn_fold.h"
#include "model/layers.h"
#include "train/precision.h"
#include "util/json.h"

using namespace coatnet;

namespace {

// Median milliseconds of `fn` over 7 rounds of `reps` launches, synchronising around each.
double median_ms(const std::function<void()>& fn, int reps) {
  for (int i = 0; i < 3; ++i) fn();
  torch::cuda::synchronize();
  std::vector<double> ms;
  for (int round = 0; round < 7; ++round) {
    const auto t0 = std::chrono::steady_clock::now();
    for (int i = 0; i < reps; ++i) fn();
    torch::cuda::synchronize();
    ms.push_back(
        std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count() /
        reps);
  }
  std::sort(ms.begin(), ms.end());
  return ms[ms.size() / 2];
}

// A bf16 kernel's row: its milliseconds against the composite's, and the bandwidth `bytes` (what
// it must move) implies.
std::string kernel_row(const char* kernel, const std::vector<int64_t>& shape, double kernel_ms,
                       double composite_ms, double bytes) {
  return json::Value{{"kernel", kernel},
                     {"shape", shape},
                     {"dtype", "bf16"},
                     {"kernel_ms", kernel_ms},
                     {"composite_ms", composite_ms},
                     {"speedup", composite_ms / kernel_ms},
                     {"kernel_gb_per_s", bytes / kernel_ms / 1e6}}
      .dump();
}

// dw_conv_dgrad: the depthwise 3x3 stride-2 convolution's input gradient against cuDNN's (ATen's
// convolution_backward asked for it alone), bf16 channels-last, input (n, c, hw, hw).
std::string bench_dw_conv(int64_t n, int64_t c, int64_t hw, const at::Device& gpu) {
  const at::TensorOptions o = at::TensorOptions().device(gpu).dtype(at::kBFloat16);
  const at::Tensor x = at::randn({n, c, hw, hw}, o).contiguous(at::MemoryFormat::ChannelsLast);
  const int64_t ohw = (hw - 1) / 2 + 1;
  const at::Tensor dy = at::randn({n, c, ohw, ohw}, o).contiguous(at::MemoryFormat::ChannelsLast);
  const at::Tensor w = at::randn({c, 1, 3, 3}, o);
  const double kernel =
      median_ms([&] { (void)cuda::dw_conv_kernels().input_grad(dy, w, x.sizes()); }, 10);
  const double cudnn = median_ms(
      [&] {
        (void)at::convolution_backward(dy, x, w, std::nullopt, {2, 2}, {1, 1}, {1, 1}, false,
                                       {0, 0}, c, {true, false, false});
      },
      10);
  const double bytes = static_cast<double>(x.numel() + dy.numel()) * 2;  // write dx, read dy
  return kernel_row("dw_conv_dgrad", {n, c, hw, hw}, kernel, cudnn, bytes);
}

// bn_gelu forward + backward against BatchNorm then GELU (autograd, as the model runs them), on
// an MBConv block's expanded activation: bf16, channels-last.
std::string bench_bn_gelu(int64_t n, int64_t c, int64_t hw, const at::Device& gpu) {
  torch::nn::BatchNorm2d bn = model::make_bn(static_cast<int>(c), 1e-5);
  bn->to(gpu);
  at::Tensor x = at::randn({n, c, hw, hw}, at::TensorOptions().device(gpu))
                     .to(at::kBFloat16)
                     .contiguous(at::MemoryFormat::ChannelsLast)
                     .requires_grad_();
  at::Tensor dy = at::randn_like(x);
  // The gradients of x, weight and bias returned, not accumulated (no extra add per launch).
  auto grads = [&](const at::Tensor& y) {
    (void)torch::autograd::grad({y}, {x, bn->weight, bn->bias}, {dy});
  };
  const double fused =
      median_ms([&] { grads(model::bn_gelu(cuda::bn_gelu_kernels(), *bn, x)); }, 10);
  const double composite = median_ms([&] { grads(at::gelu(bn->forward(x))); }, 10);
  // Passes the fused pair must make: statistics 1, forward 2, backward 5; 2 bytes each.
  const double bytes = static_cast<double>(x.numel()) * 2 * 8;
  return kernel_row("bn_gelu", {n, c, hw, hw}, fused, composite, bytes);
}

// The row of a 1x1 convolution's variant (n images, in -> out channels, hw × hw): its forward +
// backward time against the composite's, and its rate in the convolution's three products.
std::string product_row(const char* kernel, int64_t n, int64_t in, int64_t out, int64_t hw,
                        double kernel_ms, double composite_ms) {
  const double flops = 2.0 * 3 * n * hw * hw * in * out;
  char line[512];
  std::snprintf(line, sizeof line,
                "{\"kernel\":\"%s\",\"shape\":[%lld,%lld,%lld,%lld],"
                "\"dtype\":\"bf16\",\"kernel_ms\":%.4f,\"composite_ms\":%.4f,"
                "\"speedup\":%.2f,\"kernel_tflops\":%.1f}",
                kernel, static_cast<long long>(n), static_cast<long long>(in),
                static_cast<long long>(out), static_cast<long long>(hw), kernel_ms, composite_ms,
                composite_ms / kernel_ms, flops / kernel_ms / 1e9);
  return line;
}

// A 1x1 convolution with bias forward + backward (gradients of x, weight, bias), bf16,
// channels-last: as one matrix product with the bias in its epilogue (model::pointwise_conv_gemm,
// train.pointwise_gemm) against cuDNN's convolution and ATen's separate bias add.
std::string bench_pointwise(int64_t n, int64_t in, int64_t out, int64_t hw, const at::Device& gpu) {
  const auto opt = at::TensorOptions().device(gpu).dtype(at::kBFloat16);
  at::Tensor x =
      at::randn({n, in, hw, hw}, opt).contiguous(at::MemoryFormat::ChannelsLast).requires_grad_();
  at::Tensor w = (at::randn({out, in, 1, 1}, opt) * 0.05).requires_grad_();
  at::Tensor b = at::randn({out}, opt).requires_grad_();
  at::Tensor dy = at::randn({n, out, hw, hw}, opt).contiguous(at::MemoryFormat::ChannelsLast);
  auto grads = [&](const at::Tensor& y) { (void)torch::autograd::grad({y}, {x, w, b}, {dy}); };
  const double gemm = median_ms([&] { grads(model::pointwise_conv_gemm(x, w, b)); }, 10);
  const double cudnn = median_ms([&] { grads(at::conv2d(x, w, b)); }, 10);
  return product_row("pointwise_gemm", n, in, out, hw, gemm, cudnn);
}

// The squeeze-excitation's gate and the 1x1 projection after it, forward + backward (gradients
// of x, the gate, the weight and the bias), bf16, channels-last: folded into one batched product
// (model::gated_pointwise_conv, train.se_fold) against x * gate then cuDNN's convolution.
std::string bench_se_fold(int64_t n, int64_t in, int64_t out, int64_t hw, const at::Device& gpu) {
  const auto opt = at::TensorOptions().device(gpu).dtype(at::kBFloat16);
  torch::nn::Conv2d c = model::make_conv(static_cast<int>(in), static_cast<int>(out), 1, 1, true);
  c->to(gpu, at::kBFloat16);
  at::Tensor x =
      at::randn({n, in, hw, hw}, opt).contiguous(at::MemoryFormat::ChannelsLast).requires_grad_();
  at::Tensor gate = at::rand({n, in, 1, 1}, opt).requires_grad_();
  at::Tensor dy = at::randn({n, out, hw, hw}, opt).contiguous(at::MemoryFormat::ChannelsLast);
  auto grads = [&](const at::Tensor& y) {
    (void)torch::autograd::grad({y}, {x, gate, c->weight, c->bias}, {dy});
  };
  const double fold = median_ms([&] { grads(model::gated_pointwise_conv(c, x, gate)); }, 10);
  const double composite = median_ms([&] { grads(c->forward(x * gate)); }, 10);
  return product_row("se_fold", n, in, out, hw, fold, composite);
}

// The MBConv block's pre-norm BatchNorm, 1x1 expansion and norm1 in training, forward + backward
// (gradients of x and every parameter), bf16 autocast, channels-last: folded into one matrix
// product (model::bn_conv_bn, train.bn_fold) against BatchNorm, cuDNN's convolution, BatchNorm.
std::string bench_bn_fold(int64_t n, int64_t in, int64_t out, int64_t hw, const at::Device& gpu) {
  torch::nn::BatchNorm2d bn0 = model::make_bn(static_cast<int>(in), 1e-5);
  torch::nn::BatchNorm2d bn1 = model::make_bn(static_cast<int>(out), 1e-5);
  torch::nn::Conv2d c = model::make_conv(static_cast<int>(in), static_cast<int>(out), 1, 1);
  for (torch::nn::Module* m :
       {static_cast<torch::nn::Module*>(bn0.get()), static_cast<torch::nn::Module*>(bn1.get()),
        static_cast<torch::nn::Module*>(c.get())})
    m->to(gpu);
  const auto opt = at::TensorOptions().device(gpu).dtype(at::kBFloat16);
  at::Tensor x =
      at::randn({n, in, hw, hw}, opt).contiguous(at::MemoryFormat::ChannelsLast).requires_grad_();
  at::Tensor dy = at::randn({n, out, hw, hw}, opt).contiguous(at::MemoryFormat::ChannelsLast);
  const std::vector<at::Tensor> params{x,         bn0->weight, bn0->bias,
                                       c->weight, bn1->weight, bn1->bias};
  auto step = [&](const std::function<at::Tensor()>& forward) {
    at::Tensor y;
    {
      train::AutocastScope bf16(at::kCUDA, at::kBFloat16);
      y = forward();
    }
    (void)torch::autograd::grad({y}, params, {dy.to(y.scalar_type())});
  };
  const double fold =
      median_ms([&] { step([&] { return model::bn_conv_bn(*bn0, *c, *bn1, x); }); }, 10);
  const double composite =
      median_ms([&] { step([&] { return bn1->forward(c->forward(bn0->forward(x))); }); }, 10);
  return product_row("bn_fold", n, in, out, hw, fold, composite);
}

}  // namespace

int main(int argc, char** argv) {
  int64_t batch = 128, size = 224;
  for (int i = 1; i + 1 < argc; i += 2) {
    if (!std::strcmp(argv[i], "--batch")) batch = std::atoll(argv[i + 1]);
    if (!std::strcmp(argv[i], "--size")) size = std::atoll(argv[i + 1]);
  }
  if (!cuda::kernels_built()) {
    std::fprintf(stderr, "bench_kernels: skipped: built without the CUDA kernels (no nvcc)\n");
    return 77;
  }
  if (!torch::cuda::is_available()) {
    std::fprintf(stderr, "bench_kernels: skipped: no GPU visible\n");
    return 77;
  }
  const at::Device gpu(at::kCUDA, 0);
  at::Tensor u8 = at::randint(0, 256, {batch, 3, size, size}, at::TensorOptions().dtype(at::kByte))
                      .contiguous(at::MemoryFormat::ChannelsLast)
                      .to(gpu);
  at::Tensor scale = at::full({3}, 1.0 / (255 * 0.25), at::TensorOptions().device(gpu));
  at::Tensor bias = at::full({3}, -2.0, at::TensorOptions().device(gpu));
  data::MixOptions mo;
  mo.mixup_alpha = 0.8;
  const data::MixInfo mix = data::draw_mix(mo, 0, 0, size, size);
  const double elements = static_cast<double>(u8.numel());
  // Bytes the fused kernel must move: each uint8 read twice (self and mirror), bf16 written.
  const double bytes = elements * (2 + 2);
  const double kernel =
      median_ms([&] { (void)cuda::prepare_batch(u8, scale, bias, mix, at::kBFloat16); }, 50);
  const double composite = median_ms(
      [&] { (void)data::prepare_batch_composite(u8, scale, bias, mix, at::kBFloat16); }, 20);
  char line[512];
  std::snprintf(
      line, sizeof line,
      "{\"kernel\":\"batch_prep\",\"shape\":[%lld,3,%lld,%lld],\"mixup\":true,\"dtype\":\"bf16\","
      "\"kernel_ms\":%.4f,\"composite_ms\":%.4f,\"speedup\":%.2f,\"kernel_gb_per_s\":%.1f}",
      static_cast<long long>(batch), static_cast<long long>(size), static_cast<long long>(size),
      kernel, composite, composite / kernel, bytes / kernel / 1e6);
  std::vector<std::string> all{line};
  std::printf("%s\n", line);
  // One row: its JSON, or where it throws (a kernel that fails on this GPU) the error, so that
  // one failing row does not cost the others.
  auto row = [&all](const char* kernel, const std::function<std::string()>& bench) {
    try {
      all.push_back(bench());
    } catch (const std::exception& e) {
      all.push_back(json::Value{{"kernel", kernel}, {"error", e.what()}}.dump());
    }
    std::printf("%s\n", all.back().c_str());
    std::fflush(stdout);
  };
  // coatnet_0's S1 (96 wide, expanded 4x, 56 px) and S2 (192, 28 px) at this batch.
  for (auto [c, hw] : {std::pair<int64_t, int64_t>{384, size / 4}, {768, size / 8}})
    row("bn_gelu", [&, c = c, hw = hw] { return bench_bn_gelu(batch, c, hw, gpu); });
  // coatnet_0's stride-2 depthwise convolutions: S1's first block (384 wide, 112 -> 56 px) and
  // S2's (768 wide, 56 -> 28 px).
  for (auto [c, hw] : {std::pair<int64_t, int64_t>{384, size / 2}, {768, size / 4}})
    row("dw_conv_dgrad", [&, c = c, hw = hw] { return bench_dw_conv(batch, c, hw, gpu); });
  // coatnet_0's MBConv projection at S1 (384 -> 96, 56 px) and a T block's MLP at S3 (384 ->
  // 1536 -> 384, 14 px).
  for (auto [in, out, hw] : {std::tuple<int64_t, int64_t, int64_t>{384, 96, size / 4},
                             {384, 1536, size / 16},
                             {1536, 384, size / 16}})
    row("pointwise_gemm",
        [&, in = in, out = out, hw = hw] { return bench_pointwise(batch, in, out, hw, gpu); });
  // coatnet_0's MBConv gate and projection at S1 (384 -> 96, 56 px) and S2 (768 -> 192, 28 px).
  for (auto [in, out, hw] :
       {std::tuple<int64_t, int64_t, int64_t>{384, 96, size / 4}, {768, 192, size / 8}})
    row("se_fold",
        [&, in = in, out = out, hw = hw] { return bench_se_fold(batch, in, out, hw, gpu); });
  // coatnet_0's MBConv expansions: S1's first block (64 -> 384 at 112 px, the step's widest
  // tensor), S1's second and S2's first (96 -> 384 and 96 -> 768 at 56 px), S2's last (192 -> 768
  // at 28 px).
  for (auto [in, out, hw] : {std::tuple<int64_t, int64_t, int64_t>{64, 384, size / 2},
                             {96, 384, size / 4},
                             {96, 768, size / 4},
                             {192, 768, size / 8}})
    row("bn_fold",
        [&, in = in, out = out, hw = hw] { return bench_bn_fold(batch, in, out, hw, gpu); });
  std::string joined = "{\"kernels\":[";
  for (size_t i = 0; i < all.size(); ++i) joined += (i ? "," : "") + all[i];
  std::printf("%s]}\n", joined.c_str());
  return 0;
}
