// src/cuda's fused relative-position attention against the attention it replaces, computed in
// float64 with ATen: q, k, v sliced from the qkv convolution's output as Attention2d does,
// softmax(q·kᵀ/√D + table[relative_position_index]) · v, its gradients by autograd. Two
// executors of the same thread blocks: the CPU emulation (here, in every build) proves the
// algorithm — tiles and chunks past the last token, the online softmax, the table's offsets and
// gradient, the layout of qkv and of its gradient — and the CUDA kernels (on a GPU, skipped with
// the reason elsewhere) the tensor-core tiles and the parallel execution.
#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <vector>

#include "cuda/block_threads.h"
#include "cuda/kernel_checks.h"
#include "cuda/relpos_attention.h"
#include "model/coatnet.h"
#include "model/relpos.h"
#include "model/relpos_attention.h"
#include "model/transformer.h"
#include "model/variants.h"
#include "train/tiny_spec.h"

using namespace coatnet;
using test::gpu_unavailable;
using test::max_rel_diff;

namespace {

struct Problem {
  int64_t b, heads, gh, gw, d;
  int64_t n() const { return gh * gw; }
};

struct Inputs {
  at::Tensor qkv, table,
      dout;  // qkv channels-last (the convolution's output), dout (B, N, heads·D)
};

Inputs random_inputs(const Problem& p, at::ScalarType dtype, const at::Device& device) {
  const at::TensorOptions f = at::TensorOptions().dtype(at::kFloat);
  Inputs in;
  in.qkv = at::randn({p.b, p.heads * 3 * p.d, p.gh, p.gw}, f)
               .to(device, dtype)
               .contiguous(at::MemoryFormat::ChannelsLast);
  in.table = (at::randn({(2 * p.gh - 1) * (2 * p.gw - 1), p.heads}, f) * 2).to(device);
  in.dout = at::randn({p.b, p.n(), p.heads * p.d}, f).to(device, dtype);
  return in;
}

struct Outputs {
  at::Tensor out, dqkv, dtable;
};

// The composite in float64 on the CPU, with autograd.
Outputs reference(const Problem& p, const Inputs& in) {
  at::Tensor qkv = in.qkv.detach().to(at::kCPU, at::kDouble).requires_grad_(true);
  at::Tensor table = in.table.detach().to(at::kCPU, at::kDouble).requires_grad_(true);
  const int64_t n = p.n();
  auto parts = qkv.view({p.b, p.heads, 3 * p.d, n}).chunk(3, 2);
  auto tokens = [](const at::Tensor& t) { return t.transpose(-1, -2); };  // (B, heads, N, D)
  at::Tensor bias = table.index_select(0, model::relative_position_index(p.gh, p.gw))
                        .view({n, n, p.heads})
                        .permute({2, 0, 1});
  at::Tensor s = at::matmul(tokens(parts[0]), tokens(parts[1]).transpose(-1, -2)) /
                     std::sqrt(static_cast<double>(p.d)) +
                 bias;
  at::Tensor out = at::matmul(at::softmax(s, -1), tokens(parts[2]))
                       .transpose(1, 2)
                       .reshape({p.b, n, p.heads * p.d});
  out.backward(in.dout.to(at::kCPU, at::kDouble));
  return {out.detach(), qkv.grad(), table.grad()};
}

Outputs fused(const model::RelPosAttentionKernels& k, const Problem& p, const Inputs& in) {
  at::Tensor qkv = in.qkv.detach().clone().requires_grad_(true);
  at::Tensor table = in.table.detach().clone().requires_grad_(true);
  at::Tensor out = model::relpos_attention(k, qkv, table, p.heads);
  out.backward(in.dout);
  return {out.detach(), qkv.grad(), table.grad()};
}

void expect_close(const Outputs& got, const Outputs& ref, double tol, const std::string& what) {
  EXPECT_LE(max_rel_diff(got.out, ref.out), tol) << what << " out";
  EXPECT_LE(max_rel_diff(got.dqkv, ref.dqkv), tol) << what << " dqkv";
  EXPECT_LE(max_rel_diff(got.dtable, ref.dtable), tol) << what << " dtable";
}

// Float32 within 1e-4 of the largest value; bfloat16/float16 inputs (and the probabilities and
// score gradients rounded to them before their products, as flash attention does) within 2e-2.
double tolerance(at::ScalarType t) {
  return t == at::kFloat ? 1e-4 : 2e-2;
}

std::string name(const Problem& p, at::ScalarType t) {
  return std::to_string(p.b) + "x" + std::to_string(p.heads) + " heads, " + std::to_string(p.gh) +
         "x" + std::to_string(p.gw) + ", D " + std::to_string(p.d) + " " +
         std::string(c10::toString(t));
}

void expect_matches_reference(const model::RelPosAttentionKernels& k, const at::Device& device,
                              const std::vector<Problem>& problems,
                              const std::vector<at::ScalarType>& dtypes) {
  for (const Problem& p : problems)
    for (at::ScalarType t : dtypes) {
      at::manual_seed(p.n() * 7 + p.d);
      const Inputs in = random_inputs(p, t, device);
      if (!k.applies(in.qkv, p.heads)) {
        // Only float32 blocks of head size 64 may not fit a GPU's shared memory (an A100's
        // 164 KiB; an H100 has 227).
        EXPECT_TRUE(t == at::kFloat && p.d == 64) << name(p, t) << " was not taken";
        continue;
      }
      const Outputs got = fused(k, p, in);
      EXPECT_EQ(got.out.sizes(), at::IntArrayRef({p.b, p.n(), p.heads * p.d}));
      EXPECT_EQ(got.out.scalar_type(), t);
      EXPECT_TRUE(got.dqkv.is_contiguous(at::MemoryFormat::ChannelsLast)) << name(p, t);
      EXPECT_EQ(got.dtable.scalar_type(), at::kFloat);
      expect_close(got, reference(p, in), tolerance(t), name(p, t));
    }
}

// One training step of the tiny C-C-T-T model (its T stages: 1 head on 2x2, 2 heads on 1x1) on
// `device` with `kernels` registered (nullptr: the composite): the loss, then every gradient.
std::vector<at::Tensor> coatnet_step(const model::RelPosAttentionKernels* kernels,
                                     const at::Device& device) {
  model::ModelSpec spec = test::tiny_spec();
  spec.widths = {16, 32, 64, 64};
  at::manual_seed(7);
  at::Tensor x = at::randn({4, 1, 32, 32}).to(device).contiguous(at::MemoryFormat::ChannelsLast);
  at::Tensor target = at::randint(0, 10, {4}, at::TensorOptions().dtype(at::kLong)).to(device);
  at::manual_seed(8);
  model::CoAtNet net(spec);
  net->to(device);
  net->train();
  model::RelPosAttentionKernelsScope scope(kernels);
  at::Tensor loss = at::cross_entropy_loss(net->forward(x), target);
  loss.backward();
  std::vector<at::Tensor> r{loss.detach()};
  for (const auto& p : net->parameters()) r.push_back(p.grad().clone());
  return r;
}

void expect_same_step(const std::vector<at::Tensor>& got, const std::vector<at::Tensor>& ref) {
  ASSERT_EQ(got.size(), ref.size());
  EXPECT_LE(max_rel_diff(got[0], ref[0]), 1e-5) << "loss";
  double largest = 0;  // gradients zero in exact arithmetic are bounded by the largest one
  for (size_t i = 1; i < ref.size(); ++i)
    largest = std::max(largest, ref[i].abs().max().item<double>());
  for (size_t i = 1; i < ref.size(); ++i)
    EXPECT_LE((got[i] - ref[i]).abs().max().item<double>(),
              1e-3 * ref[i].abs().max().item<double>() + 1e-5 * largest)
        << "gradient " << i;
}

}  // namespace

TEST(RelPosAttentionKernel, CoAtNetStepWithEmulatedBlocksMatchesTheComposite) {
  expect_same_step(coatnet_step(&cuda::relpos_attention_emulated(), at::kCPU),
                   coatnet_step(nullptr, at::kCPU));
}

TEST(RelPosAttentionKernel, CoAtNetStepMatchesTheCompositeOnGpu) {
  if (auto why = gpu_unavailable(); !why.empty()) GTEST_SKIP() << why;
  // Plain float32 convolutions (TF32 noise would exceed the bound; see BnGeluKernel's test).
  at::Context& ctx = at::globalContext();
  const bool tf32_cudnn = ctx.allowTF32CuDNN(), tf32_cublas = ctx.allowTF32CuBLAS();
  ctx.setAllowTF32CuDNN(false);
  ctx.setAllowTF32CuBLAS(false);
  const at::Device gpu(at::kCUDA, 0);
  const auto fused = coatnet_step(&cuda::relpos_attention_kernels(), gpu);
  const auto composite = coatnet_step(nullptr, gpu);
  ctx.setAllowTF32CuDNN(tf32_cudnn);
  ctx.setAllowTF32CuBLAS(tf32_cublas);
  expect_same_step(fused, composite);
}

// 7x7 (one tile, one partial chunk), 5x6 (not square), 14x14 (coatnet_0's S3: 4 tiles of 64
// queries and 4 chunks, the last of 4 tokens), 9x9 with head size 64.
TEST(RelPosAttentionKernel, EmulatedBlocksMatchTheComposite) {
  expect_matches_reference(
      cuda::relpos_attention_emulated(), at::kCPU,
      {{2, 2, 7, 7, 32}, {1, 3, 5, 6, 32}, {1, 2, 14, 14, 32}, {1, 2, 9, 9, 64}}, {at::kFloat});
  expect_matches_reference(cuda::relpos_attention_emulated(), at::kCPU, {{1, 2, 9, 9, 32}},
                           {at::kBFloat16, at::kHalf});
}

// Every barrier the blocks need is there. Run with a CPU thread for each CUDA thread, switching
// only at barriers, in ascending and in descending thread order, they give the serial emulation's
// results bit for bit: a thread that reads what another writes with no barrier between them
// reads, in one of the two orders, the NaN that shared memory starts with.
TEST(RelPosAttentionKernel, BlocksHaveEveryBarrierTheyNeed) {
  for (const Problem& p : {Problem{1, 2, 9, 9, 32}, Problem{1, 1, 7, 7, 64}})
    for (at::ScalarType t : {at::kBFloat16, at::kFloat}) {
      at::manual_seed(p.n());
      const Inputs in = random_inputs(p, t, at::kCPU);
      const Outputs serial = fused(cuda::relpos_attention_emulated(), p, in);
      for (bool descending : {false, true}) {
        const Outputs threaded = fused(cuda::relpos_attention_threaded(descending), p, in);
        const std::string what = name(p, t) + (descending ? ", descending" : ", ascending");
        EXPECT_TRUE(at::equal(threaded.out, serial.out)) << what << ": out";
        EXPECT_TRUE(at::equal(threaded.dqkv, serial.dqkv)) << what << ": dqkv";
        EXPECT_TRUE(at::equal(threaded.dtable, serial.dtable)) << what << ": dtable";
      }
    }
}

// The threads take turns in the given order and switch only at barriers; a barrier that not
// every thread of its group reaches ends the run with an error naming the group.
TEST(BlockThreads, SwitchOnlyAtBarriersAndNameOneNotAllReach) {
  for (auto order :
       {cuda::BlockThreads::Order::kAscending, cuda::BlockThreads::Order::kDescending}) {
    cuda::BlockThreads block(4, order);
    std::vector<int> seen;  // no lock: one thread runs at a time
    block.run([&](int tid) {
      seen.push_back(tid);
      seen.push_back(tid);  // no switch between these two
      block.barrier(tid, 0, 4);
      seen.push_back(10 + tid);
    });
    const std::vector<int> want = order == cuda::BlockThreads::Order::kAscending
                                      ? std::vector<int>{0, 0, 1, 1, 2, 2, 3, 3, 10, 11, 12, 13}
                                      : std::vector<int>{3, 3, 2, 2, 1, 1, 0, 0, 13, 12, 11, 10};
    EXPECT_EQ(seen, want);
  }
  cuda::BlockThreads divergent(4, cuda::BlockThreads::Order::kAscending);
  try {
    divergent.run([&](int tid) {
      if (tid % 2 == 0) divergent.barrier(tid, 0, 4);
    });
    ADD_FAILURE() << "a barrier reached by 2 of 4 threads completed";
  } catch (const std::logic_error& e) {
    EXPECT_NE(std::string(e.what()).find("threads 0..3: 2 of 4 arrived"), std::string::npos)
        << e.what();
  }
}

TEST(RelPosAttentionKernel, TakesHeadSizes32And64Only) {
  const model::RelPosAttentionKernels& k = cuda::relpos_attention_emulated();
  EXPECT_TRUE(k.applies(at::zeros({1, 2 * 3 * 32, 4, 4}), 2));
  EXPECT_TRUE(k.applies(at::zeros({1, 3 * 64, 4, 4}), 1));
  EXPECT_FALSE(k.applies(at::zeros({1, 2 * 3 * 48, 4, 4}), 2)) << "head size 48";
  EXPECT_FALSE(k.applies(at::zeros({1, 2 * 3 * 32 + 1, 4, 4}), 2)) << "channels not 3·heads·D";
  EXPECT_FALSE(k.applies(at::zeros({1, 2 * 3 * 32, 4, 4}, at::kDouble), 2)) << "float64";
  EXPECT_THROW(k.forward(at::zeros({1, 3 * 32, 4, 4}), at::zeros({48, 1}), 1), c10::Error)
      << "a table of another grid (7x7 rows for a 4x4 grid)";
}

// Attention2d (a T block's attention: qkv convolution, attention, projection) with the emulated
// kernels registered equals it without them, in both layouts: the kernels' output and gradient
// layouts are wired to the convolutions correctly.
TEST(RelPosAttentionKernel, Attention2dTakesTheKernelsInBothLayouts) {
  model::TransformerBlockSpec spec;
  spec.dim_head = 32;
  at::manual_seed(5);
  model::Attention2d attn(64, 64, 6, 6, spec);
  {
    at::NoGradGuard no_grad;
    attn->rel_pos->table.normal_(0, 1);
  }
  for (auto format : {at::MemoryFormat::Contiguous, at::MemoryFormat::ChannelsLast}) {
    const at::Tensor x = at::randn({2, 64, 6, 6}).contiguous(format);
    auto run = [&](const model::RelPosAttentionKernels* k) {
      model::RelPosAttentionKernelsScope scope(k);
      attn->zero_grad();
      at::Tensor xg = x.clone().requires_grad_(true);
      at::Tensor y = attn->forward(xg);
      (y * y).sum().backward();
      std::vector<at::Tensor> r{y.detach(), xg.grad()};
      for (const auto& p : attn->parameters()) r.push_back(p.grad().clone());
      return r;
    };
    const auto composite = run(nullptr), emulated = run(&cuda::relpos_attention_emulated());
    ASSERT_EQ(composite.size(), emulated.size());
    EXPECT_EQ(emulated[0].suggest_memory_format(), composite[0].suggest_memory_format());
    for (size_t i = 0; i < composite.size(); ++i)
      EXPECT_LE(max_rel_diff(emulated[i], composite[i]), 1e-4)
          << (format == at::MemoryFormat::ChannelsLast ? "channels-last" : "NCHW") << " output "
          << i;
  }
}

// Head size 32 and 64, N from 30 to 576 (coatnet at 384 px: S3 is 24x24), coatnet_0's S3 and S4
// at 12 and 24 heads.
TEST(RelPosAttentionKernel, MatchesTheCompositeOnGpu) {
  if (auto why = gpu_unavailable(); !why.empty()) GTEST_SKIP() << why;
  const at::Device gpu(at::kCUDA, 0);
  expect_matches_reference(cuda::relpos_attention_kernels(), gpu,
                           {{2, 3, 5, 6, 32},
                            {2, 2, 7, 7, 64},
                            {4, 12, 14, 14, 32},
                            {4, 24, 7, 7, 32},
                            {2, 2, 14, 14, 64},
                            {1, 2, 24, 24, 32},
                            {1, 2, 24, 24, 64}},
                           {at::kFloat, at::kBFloat16, at::kHalf});
  EXPECT_FALSE(cuda::relpos_attention_kernels().applies(at::zeros({1, 3 * 32, 4, 4}), 1))
      << "a CPU tensor";
}

TEST(RelPosAttentionKernel, RunsAreBitIdenticalOnGpu) {
  if (auto why = gpu_unavailable(); !why.empty()) GTEST_SKIP() << why;
  const Problem p{16, 12, 14, 14, 32};
  at::manual_seed(9);
  const Inputs in = random_inputs(p, at::kBFloat16, at::Device(at::kCUDA, 0));
  const Outputs a = fused(cuda::relpos_attention_kernels(), p, in);
  const Outputs b = fused(cuda::relpos_attention_kernels(), p, in);
  EXPECT_TRUE(at::equal(a.out, b.out));
  EXPECT_TRUE(at::equal(a.dqkv, b.dqkv));
  EXPECT_TRUE(at::equal(a.dtable, b.dtable));
}
