// Collectives, gradient buckets and SyncBatchNorm under real MPI. The same binary runs alone
// and under `mpirun -np N` (nccl-tests style: inputs whose reduction is known in closed form,
// checked on every rank; failures are summed across ranks into the exit code).
#include <ATen/ATen.h>
#include <gtest/gtest.h>
#include <mpi.h>

#include <torch/csrc/autograd/function.h>
#include <torch/csrc/autograd/variable.h>
#include <torch/cuda.h>
#include <torch/nn/modules/batchnorm.h>
#include <torch/nn/modules/linear.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <memory>

#include "dist/comm.h"
#include "dist/grad_buckets.h"
#include "dist/sync_bn.h"
#include "dist/test_world.h"
#include "dist/world.h"
#include "train/precision.h"
#include "util/check.h"

using namespace coatnet;

namespace {

dist::World* g_world = nullptr;

std::unique_ptr<dist::Comm> make() {
  dist::CommOptions o;
  o.timeout_s = 60;
  return dist::make_comm("mpi", *g_world, o, false);
}

// A stack of linear layers: deep enough that backward keeps running after the first
// (last-layer) bucket is complete.
struct Mlp {
  std::vector<torch::nn::Linear> layers;
  explicit Mlp(int depth, int width) {
    at::manual_seed(7);  // the same weights on every rank
    for (int i = 0; i < depth; ++i) layers.emplace_back(torch::nn::LinearOptions(width, width));
  }
  at::Tensor forward(at::Tensor x) {
    for (auto& l : layers) x = at::tanh(l->forward(x));
    return x;
  }
  std::vector<at::Tensor> params_backward_order() {
    std::vector<at::Tensor> p;
    for (auto it = layers.rbegin(); it != layers.rend(); ++it) {
      p.push_back((*it)->bias);
      p.push_back((*it)->weight);
    }
    return p;
  }
};

struct Flat {
  at::Tensor grads;
  std::vector<int64_t> offsets;
  explicit Flat(const std::vector<at::Tensor>& params) {
    int64_t n = 0;
    for (const auto& p : params) {
      offsets.push_back(n);
      n += p.numel();
    }
    grads = at::zeros({n});
  }
};

// A 12-layer MLP whose gradients are bucketed (64 KiB first, then 128 KiB) over `comm`, and a
// global batch of 8 rows per rank.
struct BucketedMlp {
  explicit BucketedMlp(dist::Comm& comm)
      : m(12, 128),
        params(m.params_backward_order()),
        flat(params),
        buckets(params, flat.grads, flat.offsets, comm, 64 << 10, 128 << 10) {
    at::manual_seed(11);
    x = at::randn({8 * comm.size(), 128});
  }
  Mlp m;
  std::vector<at::Tensor> params;
  Flat flat;
  dist::GradBuckets buckets;
  at::Tensor x;
};

// The rows of a global batch that belong to `rank` (the global batch is the same everywhere).
at::Tensor slice(const at::Tensor& global, int rank, int world) {
  const int64_t b = global.size(0) / world;
  return global.narrow(0, rank * b, b);
}

at::Tensor loss_of(Mlp& m, const at::Tensor& x) {
  return m.forward(x).pow(2).mean();
}

}  // namespace

TEST(Comm, AllreduceBroadcastAllgatherClosedForm) {
  auto comm = make();
  const int r = comm->rank(), w = comm->size();
  at::Tensor t = at::full({1000}, static_cast<float>(r + 1));
  comm->allreduce(t, "test allreduce");
  EXPECT_TRUE(t.eq(w * (w + 1) / 2.0f).all().item<bool>());
  at::Tensor i = at::full({3}, static_cast<int64_t>(r + 1), at::kLong);
  comm->allreduce(i, "test allreduce int64");
  EXPECT_EQ(i[2].item<int64_t>(), static_cast<int64_t>(w) * (w + 1) / 2);
  at::Tensor b = at::full({5}, r == 0 ? 42.0 : -1.0, at::kDouble);
  comm->broadcast(b, 0, "test broadcast");
  EXPECT_EQ(b.sum().item<double>(), 210.0);
  at::Tensor g = comm->allgather(at::full({2}, static_cast<float>(r)), "test allgather");
  ASSERT_EQ(g.size(0), w);
  for (int k = 0; k < w; ++k) EXPECT_EQ(g[k][1].item<float>(), static_cast<float>(k));
  comm->barrier("test barrier");
}

// Uneven segments, one of them empty, and values that tell which rank and element they came
// from: segment r of the sum lands on rank r only, whole and in place.
TEST(Comm, ReduceScatterAndInPlaceAllgatherClosedForm) {
  auto comm = make();
  const int r = comm->rank(), w = comm->size();
  std::vector<int64_t> counts;
  for (int k = 0; k < w; ++k) counts.push_back(k == 1 ? 0 : 3 + 2 * k);  // 3, 0, 7, ...
  int64_t total = 0, mine = 0;
  for (int k = 0; k < w; ++k) {
    if (k == r) mine = total;
    total += counts[k];
  }
  // Element i of rank q's input: 1000·(q+1) + i. Its sum over ranks: 1000·w(w+1)/2 + w·i.
  at::Tensor in = at::arange(total, at::kFloat) + 1000.0f * (r + 1);
  at::Tensor out = at::full({counts[r]}, std::nanf(""));
  comm->reduce_scatter_async(in, out, counts, "test reduce_scatter")->wait();
  const at::Tensor want =
      (at::arange(mine, mine + counts[r], at::kFloat) * w + 1000.0f * w * (w + 1) / 2);
  EXPECT_TRUE(at::equal(out, want)) << "rank " << r << ": " << out << " vs " << want;
  // Segment k of rank k is k·100 + i; every other segment starts as garbage (NaN).
  const int64_t count = 5;
  at::Tensor t = at::full({count * w}, std::nanf(""), at::kDouble);
  t.narrow(0, r * count, count).copy_(at::arange(count, at::kDouble) + 100.0 * r);
  comm->allgather_inplace_async(t, count, "test allgather in place")->wait();
  for (int k = 0; k < w; ++k)
    EXPECT_TRUE(
        at::equal(t.narrow(0, k * count, count), at::arange(count, at::kDouble) + 100.0 * k))
        << "segment " << k << " on rank " << r;
  // The counts are checked before anything is sent.
  try {
    comm->reduce_scatter_async(in, out, std::vector<int64_t>(w + 1, 0), "bad counts");
    ADD_FAILURE() << "w + 1 counts accepted";
  } catch (const std::invalid_argument& e) {
    EXPECT_EQ(std::string(e.what()),
              "bad counts: reduce_scatter needs one count per rank: " + std::to_string(w) +
                  " ranks, " + std::to_string(w + 1) + " counts");
  }
  std::vector<int64_t> short_counts = counts;
  short_counts.back() -= 1;
  EXPECT_THROW(comm->reduce_scatter_async(in, out, short_counts, "short counts"),
               std::invalid_argument);
  EXPECT_THROW(comm->allgather_inplace_async(t, count + 1, "bad count"), std::invalid_argument);
}

TEST(Comm, RejectsWhatItCannotDo) {
  auto comm = make();
  EXPECT_THROW(comm->allreduce(at::ones({4}, at::kHalf), "half"), std::invalid_argument);
  dist::CommOptions o;
  EXPECT_THROW(dist::make_comm("nccl", *g_world, o, false), std::invalid_argument);
  EXPECT_THROW(dist::make_comm("gloo", *g_world, o, false), std::invalid_argument);
}

// Why the nccl tests cannot run here, or "" when they can.
std::string nccl_unavailable() {
  const auto compiled = dist::comm_backends();
  if (std::find(compiled.begin(), compiled.end(), "nccl") == compiled.end())
    return "built without NCCL (needs a CUDA LibTorch and NCCL's headers at configure time)";
  if (!torch::cuda::is_available()) return "no GPU visible: the nccl backend needs CUDA";
  if (static_cast<int>(torch::cuda::device_count()) < g_world->local_size())
    return "fewer GPUs than ranks on this node (one GPU holds one NCCL rank)";
  return "";
}

std::unique_ptr<dist::Comm> make_nccl() {
  dist::CommOptions o;
  o.timeout_s = 60;
  return dist::make_comm("nccl", *g_world, o, true);
}

TEST(Comm, NcclAllreduceClosedFormOnGpu) {
  if (auto why = nccl_unavailable(); !why.empty()) GTEST_SKIP() << why;
  auto comm = make_nccl();
  const int r = comm->rank(), w = comm->size();
  const auto dev = at::TensorOptions().device(at::kCUDA, g_world->local_rank());
  at::Tensor t = at::full({1 << 20}, static_cast<float>(r + 1), dev);
  comm->allreduce(t, "test nccl allreduce");
  EXPECT_TRUE(t.eq(w * (w + 1) / 2.0f).all().item<bool>());
  at::Tensor b = at::full({5}, r == 0 ? 42.0 : -1.0, dev.dtype(at::kDouble));
  comm->broadcast(b, 0, "test nccl broadcast");
  EXPECT_EQ(b.sum().item<double>(), 210.0);
  at::Tensor g = comm->allgather(at::full({2}, static_cast<float>(r), dev), "test nccl allgather");
  for (int k = 0; k < w; ++k) EXPECT_EQ(g[k][1].item<float>(), static_cast<float>(k));
  std::vector<int64_t> counts(w, 4);
  counts[0] = 6;
  int64_t total = 4 * w + 2, mine = r == 0 ? 0 : 6 + 4 * (r - 1);
  at::Tensor in = at::arange(total, dev) + 10.0f * (r + 1);
  at::Tensor out = at::full({counts[r]}, -1.0f, dev);
  comm->reduce_scatter_async(in, out, counts, "test nccl reduce_scatter")->wait();
  const at::Tensor want = at::arange(mine, mine + counts[r], dev) * w + 10.0f * w * (w + 1) / 2;
  EXPECT_TRUE(at::equal(out, want));
  at::Tensor parts = at::full({3 * w}, -1.0f, dev);
  parts.narrow(0, 3 * r, 3).fill_(static_cast<float>(r));
  comm->allgather_inplace_async(parts, 3, "test nccl allgather in place")->wait();
  for (int k = 0; k < w; ++k) EXPECT_EQ(parts[3 * k + 2].item<float>(), static_cast<float>(k));
  comm->barrier("test nccl barrier");
}

TEST(GradBuckets, AveragesLikeOneBigBatch) {
  auto comm = make();
  const int r = comm->rank(), w = comm->size();
  BucketedMlp net(*comm);
  Mlp& m = net.m;
  auto& params = net.params;
  Flat& flat = net.flat;
  dist::GradBuckets& buckets = net.buckets;
  const at::Tensor& x = net.x;
  ASSERT_GE(buckets.buckets().size(), 4u);

  buckets.zero();
  buckets.begin_backward(true);
  loss_of(m, slice(x, r, w)).backward();
  buckets.finish();
  at::Tensor averaged = flat.grads.clone();

  // The reference: every rank computes the gradient of the mean loss over the global batch.
  std::vector<at::Tensor> ref_grads;
  for (auto& p : params) ref_grads.push_back(at::zeros_like(p));
  at::Tensor ref = at::zeros_like(flat.grads);
  for (int k = 0; k < w; ++k) {
    for (auto& p : params) p.mutable_grad() = at::Tensor();
    loss_of(m, slice(x, k, w)).backward();
    for (size_t i = 0; i < params.size(); ++i)
      ref.narrow(0, flat.offsets[i], params[i].numel()) += params[i].grad().flatten() / w;
  }
  EXPECT_TRUE(at::allclose(averaged, ref, 1e-5, 1e-7))
      << "max |diff| " << (averaged - ref).abs().max().item<float>();
}

// Communication progresses while backward computes: at W ≥ 2, with buckets of 1-2 MB whose
// all-reduce takes measurable time, the first bucket (the last layers' gradients, launched with
// 15 layers of backward still to run) is complete before backward ends — Open MPI advances a
// non-blocking collective only inside MPI calls, and the autograd hooks test the buckets in
// flight. The figures printed: how many launched during backward completed during it, and the
// wait after backward against the time the all-reduces were in flight. (Not a timed test: the
// assertion holds however slow or fast the machine, unless nothing drives MPI during backward.)
// Two things keep it so: the ranks start each backward together (a barrier), since a peer that
// starts its backward later cannot have sent its part in time; and each rank computes on one
// thread, as the ranks of a CPU job do (train.threads = cores / ranks): on a 16-core machine two
// ranks of 16 threads each finished the 15 layers before the peer's data arrived (first seen on
// the GPU machine, 0 of 18 in time).
TEST(GradBuckets, AllReducesCompleteWhileBackwardRuns) {
  auto comm = make();
  const int r = comm->rank(), w = comm->size();
  if (w < 2) GTEST_SKIP() << "one rank has nothing to communicate (runs under mpirun -np 2, 3)";
  // Without a single-copy mechanism Open MPI moves a bucket's fragments only while both ranks
  // are inside MPI, and no bucket completes during backward (measured: 0-2 of 18); that is the
  // environment's choice, which launch/coatnet-mpirun warns about, not what this test checks.
  const char* copy = std::getenv("OMPI_MCA_btl_vader_single_copy_mechanism");
  if (copy && std::string(copy) == "none")
    GTEST_SKIP() << "OMPI_MCA_btl_vader_single_copy_mechanism=none: Open MPI's shared memory "
                    "has no single copy here, so collectives progress only inside MPI waits";
  const int threads = at::get_num_threads();
  at::set_num_threads(1);
  Mlp m(16, 512);
  auto params = m.params_backward_order();
  Flat flat(params);
  dist::GradBuckets buckets(params, flat.grads, flat.offsets, *comm, 1 << 20, 2 << 20);
  at::manual_seed(13);
  at::Tensor x = at::randn({64 * w, 512});
  double in_flight = 0, waited = 0, last_bucket = 0;
  int overlapped = 0, launched_early = 0, first_in_time = 0;
  for (int rep = 0; rep < 3; ++rep) {  // the first one warms up
    buckets.zero();
    at::Tensor loss = loss_of(m, slice(x, r, w));
    comm->barrier("backward starts together");
    buckets.begin_backward(true);
    loss.backward();
    buckets.finish();
    if (rep == 0) continue;
    const auto& bs = buckets.buckets();
    for (const auto& b : bs) {
      in_flight += b.done_s - b.launched_s;
      if (b.launched_s < buckets.backward_end_s()) {
        ++launched_early;
        if (b.done_s <= buckets.backward_end_s()) ++overlapped;
      }
    }
    waited += buckets.last_wait_s();
    last_bucket += bs.back().done_s - bs.back().launched_s;
    if (bs.front().done_s <= buckets.backward_end_s()) ++first_in_time;
  }
  std::printf(
      "[rank %d] %zu buckets: %d of %d launched during backward completed during it; "
      "all-reduces in flight %.1f ms, waited after backward %.1f ms (last bucket %.1f ms)\n",
      r, buckets.buckets().size(), overlapped, launched_early, 1e3 * in_flight / 2,
      1e3 * waited / 2, 1e3 * last_bucket / 2);
  EXPECT_GE(buckets.buckets().size(), 5u);
  at::set_num_threads(threads);
  EXPECT_EQ(first_in_time, 2) << "the first bucket's all-reduce did not complete during backward";
}

TEST(GradBuckets, AccumulationOfTwoMicroStepsEqualsOneStepOfTwiceTheBatch) {
  auto comm = make();
  const int r = comm->rank(), w = comm->size();
  at::manual_seed(5);
  at::Tensor x = at::randn({16 * w, 64});  // the global batch of 2B
  auto grads_of = [&](int micro_steps) {
    Mlp m(4, 64);
    auto params = m.params_backward_order();
    Flat flat(params);
    dist::GradBuckets buckets(params, flat.grads, flat.offsets, *comm, 8 << 10, 16 << 10);
    buckets.zero();
    // The sampler's order: micro-step j takes global rows [j·G/2, (j+1)·G/2), sliced per rank.
    for (int j = 0; j < micro_steps; ++j) {
      at::Tensor part = x.narrow(0, j * x.size(0) / micro_steps, x.size(0) / micro_steps);
      buckets.begin_backward(j == micro_steps - 1);
      (loss_of(m, slice(part, r, w)) / micro_steps).backward();
      buckets.finish();
      if (j < micro_steps - 1)  // no communication before the last micro-step
        for (const auto& b : buckets.buckets()) EXPECT_LT(b.launched_s, 0.0);
    }
    return flat.grads.clone();
  };
  at::Tensor two = grads_of(2), one = grads_of(1);
  EXPECT_TRUE(at::allclose(two, one, 1e-5, 1e-7))
      << "max |diff| " << (two - one).abs().max().item<float>();
}

TEST(SyncBatchNorm, EqualsBatchNormOverTheGlobalBatch) {
  auto comm = make();
  const int r = comm->rank(), w = comm->size();
  at::manual_seed(3);
  at::Tensor x = at::randn({4 * w, 6, 5, 5}) * 3 + 1;
  at::Tensor dy = at::randn({4 * w, 6, 5, 5});
  torch::nn::BatchNorm2d sync_bn(6), ref_bn(6);
  {
    at::NoGradGuard ng;
    sync_bn->weight.uniform_(0.5, 1.5);
    ref_bn->weight.copy_(sync_bn->weight);
  }
  at::Tensor xs = slice(x, r, w).clone().requires_grad_(true);
  at::Tensor y = dist::sync_batch_norm(*sync_bn, xs, *comm);
  (y * slice(dy, r, w)).sum().backward();

  at::Tensor xr = x.clone().requires_grad_(true);
  at::Tensor yr = ref_bn->forward(xr);
  (yr * dy).sum().backward();

  EXPECT_TRUE(at::allclose(y, slice(yr, r, w), 1e-4, 1e-5));
  // Each rank's input gradient is W × its rows of the global-loss gradient (the loss here is
  // a sum, so W ranks' sums make the global sum: the factor is 1).
  EXPECT_TRUE(at::allclose(xs.grad(), slice(xr.grad(), r, w), 1e-4, 1e-5))
      << "max |diff| " << (xs.grad() - slice(xr.grad(), r, w)).abs().max().item<float>();
  at::Tensor gw = sync_bn->weight.grad().clone();
  comm->allreduce(gw, "test weight grad");
  EXPECT_TRUE(at::allclose(gw, ref_bn->weight.grad(), 1e-4, 1e-4));
  EXPECT_TRUE(at::allclose(sync_bn->running_mean, ref_bn->running_mean, 1e-5, 1e-6));
  EXPECT_TRUE(at::allclose(sync_bn->running_var, ref_bn->running_var, 1e-4, 1e-5));
}

// max |a - b| / max |b|: an error relative to the tensor's scale, not to each element (an
// element near zero would otherwise ask for absolute precision).
double max_rel_diff(const at::Tensor& a, const at::Tensor& b) {
  return (a - b).abs().max().item<double>() / b.abs().max().item<double>();
}

// Under bf16/fp16 autocast the activations are low precision but SyncBatchNorm's statistics
// and reductions must stay float32 (PyTorch's SyncBatchNorm does the same): a bf16 mean has 8
// significant bits, and comm-mpi reduces no 16-bit type at all. Reference: the float32
// SyncBatchNorm on the same values upcast, so statistics agree to float32 rounding and the
// output to the low-precision dtype's rounding; and against the unrounded float32 input, within
// what rounding the input itself costs.
void expect_low_precision_close_to_fp32(at::ScalarType dtype, double ulp, dist::Comm* comm,
                                        at::Device device) {
  const int r = comm->rank(), w = comm->size();
  at::manual_seed(5);
  at::Tensor x = (at::randn({4 * w, 6, 5, 5}) * 3 + 1).to(device);
  at::Tensor dy = at::randn({4 * w, 6, 5, 5}).to(device);
  at::Tensor x_low = x.to(dtype), x_rounded = x_low.to(at::kFloat);
  torch::nn::BatchNorm2d low_bn(6), ref_bn(6), exact_bn(6);
  for (auto* bn : {&low_bn, &ref_bn, &exact_bn}) (*bn)->to(device);
  {
    at::NoGradGuard ng;
    low_bn->weight.uniform_(0.5, 1.5);
    ref_bn->weight.copy_(low_bn->weight);
    exact_bn->weight.copy_(low_bn->weight);
  }
  at::Tensor xs = slice(x_low, r, w).clone().requires_grad_(true);
  at::Tensor y;
  {
    train::AutocastScope scope(device.type(), dtype);
    y = dist::sync_batch_norm(*low_bn, xs, *comm);
  }
  (y.to(at::kFloat) * slice(dy, r, w)).sum().backward();
  ASSERT_EQ(y.scalar_type(), dtype);
  ASSERT_EQ(xs.grad().scalar_type(), dtype);

  auto reference = [&](torch::nn::BatchNorm2d& bn, const at::Tensor& input) {
    at::Tensor xr = slice(input, r, w).clone().requires_grad_(true);
    at::Tensor yr = dist::sync_batch_norm(*bn, xr, *comm);
    (yr * slice(dy, r, w)).sum().backward();
    return std::make_pair(yr.detach(), xr.grad());
  };
  auto [y_ref, dx_ref] = reference(ref_bn, x_rounded);
  auto [y_exact, dx_exact] = reference(exact_bn, x);

  // Statistics: float32 arithmetic on the same values.
  EXPECT_TRUE(at::allclose(low_bn->running_mean, ref_bn->running_mean, 1e-6, 1e-6))
      << "max |diff| " << (low_bn->running_mean - ref_bn->running_mean).abs().max().item<float>();
  EXPECT_TRUE(at::allclose(low_bn->running_var, ref_bn->running_var, 1e-6, 1e-6))
      << "max |diff| " << (low_bn->running_var - ref_bn->running_var).abs().max().item<float>();
  // Output and input gradient: the float32 result, rounded once to the dtype (half an ulp,
  // `ulp` here); dy reaches the function rounded too (the cast's backward), so the input
  // gradient may carry two roundings and the small mean terms' error: three.
  EXPECT_LE(max_rel_diff(y.to(at::kFloat), y_ref), ulp) << "output";
  EXPECT_LE(max_rel_diff(xs.grad().to(at::kFloat), dx_ref), 3 * ulp) << "input gradient";
  at::Tensor gw = low_bn->weight.grad().clone(), gw_ref = ref_bn->weight.grad().clone();
  comm->allreduce(gw, "test weight grad");
  comm->allreduce(gw_ref, "test weight grad (reference)");
  EXPECT_LE(max_rel_diff(gw, gw_ref), 3 * ulp) << "weight gradient";
  // Against the float32 input: what rounding the input to the dtype costs (|x| < 16 here).
  const double y_vs_exact = max_rel_diff(y.to(at::kFloat), y_exact);
  EXPECT_LE(y_vs_exact, 8 * ulp) << "output against float32 on the unrounded input";
  std::printf(
      "[rank %d] %s SyncBatchNorm against float32: output %.3g, input gradient %.3g "
      "(max |diff| / max |fp32|)\n",
      r, c10::toString(dtype), y_vs_exact, max_rel_diff(xs.grad().to(at::kFloat), dx_exact));
}

TEST(SyncBatchNorm, Bfloat16AutocastKeepsFloat32Statistics) {
  auto comm = make();
  expect_low_precision_close_to_fp32(at::kBFloat16, std::ldexp(1.0, -8), comm.get(), at::kCPU);
}

TEST(SyncBatchNorm, Float16AutocastKeepsFloat32Statistics) {
  auto comm = make();
  expect_low_precision_close_to_fp32(at::kHalf, std::ldexp(1.0, -11), comm.get(), at::kCPU);
}

TEST(SyncBatchNorm, LowPrecisionOnGpuOverNccl) {
  if (auto why = nccl_unavailable(); !why.empty()) GTEST_SKIP() << why;
  auto comm = make_nccl();
  const at::Device gpu(at::kCUDA, g_world->local_rank());
  expect_low_precision_close_to_fp32(at::kBFloat16, std::ldexp(1.0, -8), comm.get(), gpu);
  expect_low_precision_close_to_fp32(at::kHalf, std::ldexp(1.0, -11), comm.get(), gpu);
}

TEST(Check, MpiErrorsNameTheCallFileLineRankAndHost) {
  // World::init makes MPI return errors; the check turns one into an error saying where.
  char host[256] = "?";
  gethostname(host, sizeof host - 1);
  try {
    COATNET_MPI_CHECK(MPI_Send(nullptr, 0, MPI_INT, g_world->size() + 7, 0, MPI_COMM_WORLD),
                      "a send to no rank");
    FAIL() << "a send to a rank that does not exist was accepted";
  } catch (const std::runtime_error& e) {
    const std::string m = e.what();
    EXPECT_NE(m.find("MPI error at tests/dist/test_dist.cpp:"), std::string::npos) << m;
    EXPECT_NE(m.find("(rank " + std::to_string(g_world->rank()) + " on " + host + ")"),
              std::string::npos)
        << m;
    EXPECT_NE(m.find("a send to no rank: MPI_Send("), std::string::npos) << m;
    if (g_world->is_root()) std::printf("the message: %s\n", m.c_str());
  }
}

coatnet::dist::World& test_world() {
  return *g_world;
}

int main(int argc, char** argv) {
  g_world = &dist::World::init(argc, argv);
  at::set_num_threads(1);
  ::testing::InitGoogleTest(&argc, argv);
  if (!g_world->is_root()) {  // rank 0 reports; the others only on failure (below)
    auto& listeners = ::testing::UnitTest::GetInstance()->listeners();
    delete listeners.Release(listeners.default_result_printer());
  }
  const int failed = RUN_ALL_TESTS() != 0 ? 1 : 0;
  const int64_t ranks_failed = g_world->sum(failed);
  if (failed) std::fprintf(stderr, "[rank %d] some tests failed\n", g_world->rank());
  if (g_world->is_root())
    std::printf("%lld of %d rank(s) failed\n", static_cast<long long>(ranks_failed),
                g_world->size());
  return ranks_failed > 0 ? 1 : 0;
}

// A CUDA graph's capture needs the accumulators made anew on its stream (a capture on an H100
// failed with "operation would make the legacy stream depend on a capturing blocking stream"):
// after remake_accumulators() the old nodes are gone, the new ones carry the hooks (every
// bucket but the last starts during backward, not in finish()) and the average is unchanged;
// while a step's loss still holds them, remaking is refused rather than hooking one twice.
TEST(GradBuckets, RemadeAccumulatorsAreNewAndHooked) {
  auto comm = make();
  const int r = comm->rank(), w = comm->size();
  BucketedMlp net(*comm);
  dist::GradBuckets& buckets = net.buckets;
  auto step = [&] {
    buckets.zero();
    buckets.begin_backward(true);
    loss_of(net.m, slice(net.x, r, w)).backward();
    buckets.finish();
    return net.flat.grads.clone();
  };
  const at::Tensor before = step();
  std::vector<std::weak_ptr<torch::autograd::Node>> old;
  for (const auto& p : net.params) old.push_back(torch::autograd::impl::grad_accumulator(p));

  {
    const at::Tensor held = loss_of(net.m, slice(net.x, r, w));  // its graph holds the accumulators
    try {
      buckets.remake_accumulators();
      ADD_FAILURE() << "remade accumulators that a loss still held";
    } catch (const std::logic_error& e) {
      EXPECT_NE(std::string(e.what()).find("still held elsewhere"), std::string::npos) << e.what();
    }
  }
  buckets.remake_accumulators();
  for (size_t i = 0; i < old.size(); ++i) EXPECT_TRUE(old[i].expired()) << "parameter " << i;
  const at::Tensor after = step();
  EXPECT_TRUE(at::equal(before, after));
  const auto& bs = buckets.buckets();
  for (size_t b = 0; b + 1 < bs.size(); ++b)
    EXPECT_LT(bs[b].launched_s, buckets.backward_end_s()) << "bucket " << b << " of " << bs.size();
}
