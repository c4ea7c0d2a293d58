// src/cuda/relpos_attention against the attention it replaces, computed in float64 with ATen:
// softmax(q·kᵀ/√d + table[relative_position_index]) · v, its gradients by autograd. Two
// executors of the same thread blocks are tested: the CPU emulation (one thread a block, here,
// in CI) proves the algorithm — tiling, the table offsets, the log-sum-exp recomputation, the
// table's gradient — and the CUDA kernels (on a GPU, skipped with the reason elsewhere) prove
// the parallel execution: float32 within 1e-4 of the largest value, bfloat16 and float16 within
// their rounding (2e-2).
#include <ATen/ATen.h>
#include <gtest/gtest.h>
#include <torch/csrc/autograd/custom_function.h>
#include <torch/cuda.h>

#include <vector>

#include "cuda/batch_prep.h"
#include "cuda/relpos_attention.h"
#include "cuda/relpos_attention_blocks.h"
#include "model/coatnet.h"
#include "model/relpos.h"
#include "model/transformer.h"
#include "model/variants.h"

using namespace coatnet;
namespace rp = coatnet::cuda::relpos;

namespace {

struct CpuOps {
  static void sync() {}
  static void add(float* p, float v) { *p += v; }
};

struct Problem {
  int64_t b, heads, gh, gw, d;
  int64_t n() const { return gh * gw; }
};

struct Inputs {
  at::Tensor q, k, v, table, dout;
};

Inputs random_inputs(const Problem& p, at::ScalarType dtype, const at::Device& device) {
  const at::TensorOptions o = at::TensorOptions().dtype(at::kFloat);
  Inputs in;
  in.q = at::randn({p.b, p.heads, p.n(), p.d}, o).to(device, dtype);
  in.k = at::randn({p.b, p.heads, p.n(), p.d}, o).to(device, dtype);
  in.v = at::randn({p.b, p.heads, p.n(), p.d}, o).to(device, dtype);
  in.table = (at::randn({(2 * p.gh - 1) * (2 * p.gw - 1), p.heads}, o) * 2).to(device);
  in.dout = at::randn({p.b, p.heads, p.n(), p.d}, o).to(device, dtype);
  return in;
}

// The reference: the composite in float64 on the CPU, with autograd. {out, dq, dk, dv, dtable}.
std::vector<at::Tensor> reference(const Problem& p, const Inputs& in) {
  auto f64 = [](const at::Tensor& t) {
    return t.detach().to(at::kCPU, at::kDouble).set_requires_grad(true);
  };
  at::Tensor q = f64(in.q), k = f64(in.k), v = f64(in.v), table = f64(in.table);
  const int64_t n = p.n();
  at::Tensor bias = table.index_select(0, model::relative_position_index(p.gh, p.gw))
                        .view({n, n, p.heads})
                        .permute({2, 0, 1});
  at::Tensor s = at::matmul(q, k.transpose(-1, -2)) / std::sqrt(static_cast<double>(p.d)) + bias;
  at::Tensor out = at::matmul(at::softmax(s, -1), v);
  out.backward(in.dout.to(at::kCPU, at::kDouble));
  return {out.detach(), q.grad(), k.grad(), v.grad(), table.grad()};
}

rp::Shape shape_of(const Problem& p) {
  return {static_cast<int>(p.heads), static_cast<int>(p.n()),
          static_cast<int>(p.d),     static_cast<int>(p.gh),
          static_cast<int>(p.gw),    static_cast<float>(1.0 / std::sqrt(static_cast<double>(p.d)))};
}

rp::Shape shape_of(const at::Tensor& q, int64_t gh, int64_t gw) {
  return shape_of(Problem{q.size(0), q.size(1), gh, gw, q.size(3)});
}

// Runs `block(bh, row0, smem)` for every block of a launch, serially, with fresh shared memory
// filled with NaN (a value read before it is written shows in the result).
template <typename Block>
void run_blocks(const rp::Shape& s, int64_t bh, int64_t bytes, Block block) {
  std::vector<float> smem;
  for (int y = 0; y < bh; ++y)
    for (int row0 = 0; row0 < s.n; row0 += rp::kRows) {
      smem.assign(static_cast<size_t>(bytes / 4), std::nanf(""));
      block(y, row0, smem.data());
    }
}

// The thread blocks run serially on the CPU (float32): {out, lse}.
std::vector<at::Tensor> emulate_forward(const at::Tensor& q_in, const at::Tensor& k_in,
                                        const at::Tensor& v_in, const at::Tensor& table_in,
                                        int64_t gh, int64_t gw) {
  at::Tensor q = q_in.contiguous(), k = k_in.contiguous(), v = v_in.contiguous();
  at::Tensor table = table_in.contiguous(), out = at::empty_like(q);
  at::Tensor lse = at::empty({q.size(0), q.size(1), q.size(2)});
  const rp::Shape s = shape_of(q, gh, gw);
  rp::Tensors<float> t{};
  t.q = q.data_ptr<float>();
  t.k = k.data_ptr<float>();
  t.v = v.data_ptr<float>();
  t.table = table.data_ptr<float>();
  t.lse = lse.data_ptr<float>();
  t.o = out.data_ptr<float>();
  run_blocks(s, q.size(0) * q.size(1), rp::forward_smem_bytes(s),
             [&](int y, int row0, float* m) { rp::forward_block<CpuOps>(s, t, y, row0, 0, 1, m); });
  return {out, lse};
}

// {dq, dk, dv, dtable}.
std::vector<at::Tensor> emulate_backward(const at::Tensor& dout_in, const at::Tensor& q_in,
                                         const at::Tensor& k_in, const at::Tensor& v_in,
                                         const at::Tensor& out_in, const at::Tensor& lse_in,
                                         const at::Tensor& table_in, int64_t gh, int64_t gw) {
  at::Tensor q = q_in.contiguous(), k = k_in.contiguous(), v = v_in.contiguous();
  at::Tensor out = out_in.contiguous(), dout = dout_in.contiguous(), lse = lse_in.contiguous();
  at::Tensor table = table_in.contiguous();
  at::Tensor dq = at::empty_like(q), dk = at::empty_like(q), dv = at::empty_like(q);
  at::Tensor dtable = at::zeros_like(table), delta = at::empty_like(lse);
  const rp::Shape s = shape_of(q, gh, gw);
  rp::Tensors<float> t{};
  t.q = q.data_ptr<float>();
  t.k = k.data_ptr<float>();
  t.v = v.data_ptr<float>();
  t.out = out.data_ptr<float>();
  t.dout = dout.data_ptr<float>();
  t.table = table.data_ptr<float>();
  t.lse = lse.data_ptr<float>();
  t.delta = delta.data_ptr<float>();
  t.dq = dq.data_ptr<float>();
  t.dk = dk.data_ptr<float>();
  t.dv = dv.data_ptr<float>();
  t.dtable = dtable.data_ptr<float>();
  const int64_t bh = q.size(0) * q.size(1);
  run_blocks(s, bh, rp::backward_q_smem_bytes(s), [&](int y, int row0, float* m) {
    rp::backward_q_block<CpuOps>(s, t, y, row0, 0, 1, m);
  });
  run_blocks(s, bh, rp::backward_kv_smem_bytes(s), [&](int y, int row0, float* m) {
    rp::backward_kv_block<CpuOps>(s, t, y, row0, 0, 1, m);
  });
  return {dq, dk, dv, dtable};
}

std::vector<at::Tensor> emulated(const Problem& p, const Inputs& in) {
  const std::vector<at::Tensor> f = emulate_forward(in.q, in.k, in.v, in.table, p.gh, p.gw);
  std::vector<at::Tensor> g =
      emulate_backward(in.dout, in.q, in.k, in.v, f[0], f[1], in.table, p.gh, p.gw);
  return {f[0], g[0], g[1], g[2], g[3]};
}

// The emulated blocks as the model's attention (model::use_attention), with autograd.
class EmulatedAttention : public torch::autograd::Function<EmulatedAttention> {
 public:
  static at::Tensor forward(torch::autograd::AutogradContext* ctx, const at::Tensor& q,
                            const at::Tensor& k, const at::Tensor& v, const at::Tensor& table,
                            int64_t gh, int64_t gw) {
    std::vector<at::Tensor> r = emulate_forward(q, k, v, table, gh, gw);
    ctx->save_for_backward({q, k, v, table, r[0], r[1]});
    ctx->saved_data["gh"] = gh;
    ctx->saved_data["gw"] = gw;
    return r[0];
  }
  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grads) {
    const auto sv = ctx->get_saved_variables();
    std::vector<at::Tensor> g =
        emulate_backward(grads[0], sv[0], sv[1], sv[2], sv[4], sv[5], sv[3],
                         ctx->saved_data["gh"].toInt(), ctx->saved_data["gw"].toInt());
    return {g[0], g[1], g[2], g[3], at::Tensor(), at::Tensor()};
  }
};

at::Tensor emulated_attention(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                              const at::Tensor& table, int64_t gh, int64_t gw) {
  return EmulatedAttention::apply(q, k, v, table, gh, gw);
}

// A small coatnet_0 (1, 1, 2, 1 blocks: three attention layers, two grids) on `device`, run
// with the composite and then with `attention`: the logits' and the whole gradient's relative
// differences (‖Δ‖/‖ref‖; per-tensor maxima would be noise for the pre-norm BatchNorm biases,
// whose true gradient is 0), and the worst relative difference of a bias table's gradient.
struct ModelDifference {
  double logits, gradient, tables;
};
ModelDifference model_difference(const at::Device& device, const model::AttentionFn& attention,
                                 int64_t batch) {
  model::ModelSpec spec = model::variant("coatnet_0_224");
  spec.depths = {1, 1, 2, 1};
  at::manual_seed(9);
  model::CoAtNet net(spec);
  net->to(device);
  net->train();
  const at::Tensor x = at::randn({batch, 3, 224, 224}).to(device);
  auto run = [&] {
    for (auto& p : net->parameters()) p.mutable_grad() = at::Tensor();
    at::Tensor logits = net->forward(x);
    logits.pow(2).mean().backward();
    std::vector<at::Tensor> g{logits.detach().clone()};
    for (auto& p : net->parameters()) g.push_back(p.grad().detach().flatten().clone());
    return g;
  };
  const std::vector<at::Tensor> composite = run();
  EXPECT_EQ(model::use_attention(*net, attention), 3);  // 2 in S3, 1 in S4
  const std::vector<at::Tensor> fused = run();
  auto rel = [](const at::Tensor& a, const at::Tensor& b) {
    return (a - b).norm().item<double>() / b.norm().item<double>();
  };
  ModelDifference d{rel(fused[0], composite[0]),
                    rel(at::cat(std::vector<at::Tensor>(fused.begin() + 1, fused.end())),
                        at::cat(std::vector<at::Tensor>(composite.begin() + 1, composite.end()))),
                    0};
  const auto names = net->named_parameters().keys();
  for (size_t i = 0; i < names.size(); ++i)
    if (names[i].find("relative_position_bias_table") != std::string::npos)
      d.tables = std::max(d.tables, rel(fused[i + 1], composite[i + 1]));
  std::printf(
      "model with the kernel vs the composite on %s: logits %.2e, gradient %.2e, bias "
      "tables' gradients %.2e (relative norms)\n",
      device.str().c_str(), d.logits, d.gradient, d.tables);
  return d;
}

double max_rel_diff(const at::Tensor& a, const at::Tensor& ref) {
  return (a.to(at::kCPU, at::kDouble) - ref).abs().max().item<double>() /
         ref.abs().max().item<double>();
}

void expect_close(const std::vector<at::Tensor>& got, const std::vector<at::Tensor>& ref,
                  double tol, const std::string& what) {
  const char* names[] = {"out", "dq", "dk", "dv", "dtable"};
  for (size_t i = 0; i < ref.size(); ++i) {
    const double e = max_rel_diff(got[i], ref[i]);
    EXPECT_LT(e, tol) << what << ": " << names[i] << " max |diff| / max |ref| = " << e;
    std::printf("%s: %s %.2e\n", what.c_str(), names[i], e);
  }
}

std::string describe(const Problem& p, at::ScalarType dtype) {
  return std::string(c10::toString(dtype)) + " B=" + std::to_string(p.b) +
         " heads=" + std::to_string(p.heads) + " grid=" + std::to_string(p.gh) + "x" +
         std::to_string(p.gw) + " d=" + std::to_string(p.d);
}

}  // namespace

// Tiles and chunks that divide N, that do not (a last tile of 17 rows, a last chunk of 17), a
// non-square grid, a single partial tile: each against the float64 composite.
TEST(RelPosAttention, EmulatedBlocksEqualTheComposite) {
  at::manual_seed(3);
  for (const Problem& p : {Problem{2, 3, 7, 7, 32}, Problem{1, 2, 9, 9, 8}, Problem{1, 2, 5, 6, 16},
                           Problem{1, 1, 3, 2, 4}}) {
    const Inputs in = random_inputs(p, at::kFloat, at::kCPU);
    expect_close(emulated(p, in), reference(p, in), 1e-5, "emulated " + describe(p, at::kFloat));
  }
}

// The table's offsets are the model's (relative_position_index), for every query and key pair.
TEST(RelPosAttention, OffsetsAreTheModelsRelativePositionIndex) {
  for (auto [gh, gw] : {std::pair{7, 7}, {5, 6}, {3, 8}}) {
    const rp::Shape s{1, gh * gw, 8, gh, gw, 1.f};
    const at::Tensor index = model::relative_position_index(gh, gw);
    const auto* ix = index.data_ptr<int64_t>();
    for (int i = 0; i < s.n; ++i)
      for (int j = 0; j < s.n; ++j) ASSERT_EQ(s.offset(i, j), ix[i * s.n + j]) << i << "," << j;
  }
}

// The CUDA kernels (autograd through cuda::relpos_attention) against the float64 composite: head
// sizes 32 and 64, N from 49 to 576, float32, bfloat16 and float16.
TEST(RelPosAttention, KernelsEqualTheCompositeOnGpu) {
  if (!torch::cuda::is_available()) GTEST_SKIP() << "no CUDA device: the kernels run on a GPU only";
  if (!cuda::kernels_built()) GTEST_SKIP() << "built without nvcc: no src/cuda kernels";
  at::manual_seed(5);
  for (const Problem& p :
       {Problem{4, 6, 7, 7, 32}, Problem{3, 4, 14, 14, 32}, Problem{2, 4, 14, 14, 64},
        Problem{1, 2, 24, 24, 64}, Problem{2, 3, 5, 6, 32}}) {
    for (at::ScalarType dtype : {at::kFloat, at::kBFloat16, at::kHalf}) {
      const Inputs in = random_inputs(p, dtype, at::kCUDA);
      const std::vector<at::Tensor> ref = reference(p, in);
      at::Tensor q = in.q.detach().requires_grad_(true), k = in.k.detach().requires_grad_(true),
                 v = in.v.detach().requires_grad_(true), t = in.table.detach().requires_grad_(true);
      at::Tensor out = cuda::relpos_attention(q, k, v, t, p.gh, p.gw);
      out.backward(in.dout);
      expect_close({out.detach(), q.grad(), k.grad(), v.grad(), t.grad()}, ref,
                   dtype == at::kFloat ? 1e-4 : 2e-2, "gpu " + describe(p, dtype));
    }
  }
}

// The whole model with the emulated blocks in its T stages (model::use_attention) against the
// same model with the composite, on the CPU: the wiring (q, k, v, table and grid handed over,
// gradients back through autograd) is the kernel's.
TEST(RelPosAttention, ModelWithEmulatedBlocksEqualsTheComposite) {
  const ModelDifference d = model_difference(at::kCPU, emulated_attention, 2);
  EXPECT_LT(d.logits, 1e-5);
  EXPECT_LT(d.gradient, 1e-4);
  EXPECT_LT(d.tables, 1e-4);
}

// The same on a GPU with the CUDA kernels, float32.
TEST(RelPosAttention, ModelWithTheKernelEqualsTheCompositeOnGpu) {
  if (!torch::cuda::is_available()) GTEST_SKIP() << "no CUDA device: the kernels run on a GPU only";
  if (!cuda::kernels_built()) GTEST_SKIP() << "built without nvcc: no src/cuda kernels";
  const ModelDifference d = model_difference(at::kCUDA, cuda::relpos_attention, 4);
  EXPECT_LT(d.logits, 1e-4);
  EXPECT_LT(d.gradient, 1e-3);
  EXPECT_LT(d.tables, 1e-3);
}
