// Each kernel of src/cuda against the ATen composite it replaces, on the GPU, in one run:
// median milliseconds over repeated launches (after a warm-up), the achieved bandwidth of the
// bytes the kernel must move, and the speed-up. One JSON object per kernel (and shape), then one
// line {"kernels": [...]} holding them all; exit 77 (skipped, with the reason) without a GPU or
// without the kernels.
//   bench_kernels [--batch 128] [--size 224]
#include <ATen/ATen.h>
#include <torch/cuda.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <string>
#include <vector>

#include <torch/csrc/autograd/autograd.h>

#include "cuda/batch_prep.h"
#include "cuda/relpos_attention.h"
#include "data/mixup.h"
#include "model/relpos.h"

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

// Forward + backward of the relative-position attention at coatnet shapes (bf16): the fused
// kernel, the model's ATen composite (the bias gathered from the table, then
// scaled_dot_product_attention with it) and the explicit composite (matmul, softmax, matmul).
std::string bench_relpos(int64_t batch, int64_t heads, int64_t grid, int64_t d,
                         const at::Device& gpu) {
  const int64_t n = grid * grid;
  const auto opt = at::TensorOptions().device(gpu).dtype(at::kBFloat16);
  at::Tensor q = at::randn({batch, heads, n, d}, opt).requires_grad_(true);
  at::Tensor k = at::randn({batch, heads, n, d}, opt).requires_grad_(true);
  at::Tensor v = at::randn({batch, heads, n, d}, opt).requires_grad_(true);
  at::Tensor table =
      at::randn({(2 * grid - 1) * (2 * grid - 1), heads}, at::TensorOptions().device(gpu))
          .requires_grad_(true);
  at::Tensor dout = at::randn({batch, heads, n, d}, opt);
  const at::Tensor index = model::relative_position_index(grid, grid).to(gpu);
  auto bias = [&] {
    // Contiguous, as model::RelPosBias::bias().
    return table.index_select(0, index)
        .view({n, n, heads})
        .permute({2, 0, 1})
        .contiguous()
        .to(at::kBFloat16);
  };
  auto both = [&](const std::function<at::Tensor()>& forward) {
    return [&, forward] { (void)torch::autograd::grad({forward()}, {q, k, v, table}, {dout}); };
  };
  const double kernel =
      median_ms(both([&] { return cuda::relpos_attention(q, k, v, table, grid, grid); }), 20);
  const double kernel_fwd = median_ms(
      [&] {
        (void)cuda::relpos_attention_forward(q.detach(), k.detach(), v.detach(), table.detach(),
                                             grid, grid);
      },
      20);
  const double composite =
      median_ms(both([&] { return at::scaled_dot_product_attention(q, k, v, bias()); }), 20);
  const double explicit_ms = median_ms(
      both([&] {
        at::Tensor s =
            at::matmul(q, k.transpose(-1, -2)) / std::sqrt(static_cast<double>(d)) + bias();
        return at::matmul(at::softmax(s, -1), v);
      }),
      20);
  char line[512];
  std::snprintf(
      line, sizeof line,
      "{\"kernel\":\"relpos_attention\",\"shape\":[%lld,%lld,%lld,%lld],\"dtype\":\"bf16\","
      "\"kernel_ms\":%.4f,\"kernel_forward_ms\":%.4f,\"composite_ms\":%.4f,"
      "\"explicit_ms\":%.4f,\"speedup\":%.2f,\"speedup_vs_explicit\":%.2f}",
      static_cast<long long>(batch), static_cast<long long>(heads), static_cast<long long>(n),
      static_cast<long long>(d), kernel, kernel_fwd, composite, explicit_ms, composite / kernel,
      explicit_ms / kernel);
  return line;
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
  // coatnet_0_224's S3 (12 heads on 14x14) and S4 (24 on 7x7), and S3 at 384 px (24x24).
  for (auto [heads, grid] : {std::pair<int64_t, int64_t>{12, 14}, {24, 7}, {12, 24}}) {
    all.push_back(bench_relpos(batch, heads, grid, 32, gpu));
    std::printf("%s\n", all.back().c_str());
    std::fflush(stdout);
  }
  std::string joined = "{\"kernels\":[";
  for (size_t i = 0; i < all.size(); ++i) joined += (i ? "," : "") + all[i];
  std::printf("%s]}\n", joined.c_str());
  return 0;
}
