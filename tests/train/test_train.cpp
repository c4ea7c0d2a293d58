// The training recipe's parts against their references: AdamW against torch::optim::AdamW,
// the loss against ATen's label-smoothed cross-entropy, the schedule's defining points, EMA,
// clipping and the flat parameter layout.
#include <ATen/ATen.h>
#include <gtest/gtest.h>
#include <torch/nn/modules/linear.h>
#include <torch/nn/modules/normalization.h>
#include <torch/optim/adamw.h>

#include <cmath>

#include "config/config.h"
#include "cuda/batch_prep.h"
#include "data/mixup.h"
#include "model/coatnet.h"
#include "train/ema.h"
#include "train/flat_params.h"
#include "train/graphed_step.h"
#include "train/loss.h"
#include "train/optim.h"
#include "train/precision.h"
#include "train/setup.h"
#include "train/zero.h"

using namespace coatnet;

namespace {

struct Tiny : torch::nn::Module {
  torch::nn::Linear fc1{nullptr}, fc2{nullptr};
  torch::nn::LayerNorm norm{nullptr};
  Tiny() {
    fc1 = register_module("fc1", torch::nn::Linear(6, 5));
    norm = register_module("norm", torch::nn::LayerNorm(torch::nn::LayerNormOptions({5})));
    fc2 = register_module("fc2", torch::nn::Linear(5, 3));
  }
  // Another Tiny with the same weights.
  void copy_to(Tiny& other) {
    at::NoGradGuard ng;
    auto from = parameters(), to = other.parameters();
    for (size_t i = 0; i < from.size(); ++i) to[i].copy_(from[i]);
  }
};

// Two AdamWs over two copies of one Tiny, default options: the same steps must keep them equal.
struct TwinAdamW {
  Tiny a, b;
  train::FlatParams fa{a}, fb{b};
  train::AdamW oa{fa, {}}, ob{fb, {}};
  TwinAdamW() {
    at::NoGradGuard ng;
    fb.values.copy_(fa.values);  // b's parameters are views of it: b now has a's weights
  }
  void same_gradients() {  // random, the same in both
    fa.grads.normal_();
    fb.grads.copy_(fa.grads);
  }
};

}  // namespace

TEST(AdamW, MatchesTorchAdamWWithDecayOnWeightsOnly) {
  at::manual_seed(1);
  Tiny ours, ref;
  ours.copy_to(ref);
  train::FlatParams flat(ours);
  train::AdamWOptions o;
  o.weight_decay = 0.1;
  train::AdamW opt(flat, o);
  std::vector<at::Tensor> decay, no_decay;
  for (auto& p : ref.named_parameters())
    (p.value().dim() >= 2 ? decay : no_decay).push_back(p.value());
  std::vector<torch::optim::OptimizerParamGroup> groups;
  groups.emplace_back(decay, std::make_unique<torch::optim::AdamWOptions>(
                                 torch::optim::AdamWOptions(0.01).weight_decay(0.1)));
  groups.emplace_back(no_decay, std::make_unique<torch::optim::AdamWOptions>(
                                    torch::optim::AdamWOptions(0.01).weight_decay(0.0)));
  torch::optim::AdamW torch_opt(groups, torch::optim::AdamWOptions(0.01));
  auto named = ref.named_parameters();
  for (int step = 0; step < 5; ++step) {
    const double lr = 0.01 * (step + 1) / 5;
    for (auto& g : torch_opt.param_groups())
      static_cast<torch::optim::AdamWOptions&>(g.options()).lr(lr);
    for (const train::FlatEntry& e : flat.entries) {
      at::Tensor g = at::randn(e.param.sizes());
      flat.grads.narrow(0, e.offset, e.numel).copy_(g.flatten());
      named[e.name].mutable_grad() = g.clone();
    }
    opt.step(lr, at::zeros({}));
    torch_opt.step();
  }
  for (const train::FlatEntry& e : flat.entries)
    EXPECT_TRUE(at::allclose(e.param, named[e.name], 1e-5, 1e-6)) << e.name;
  EXPECT_EQ(opt.steps(), 5);
  // found_inf = 1: the step is skipped on the device — parameters, moments and the step
  // count stay exactly as they were.
  at::Tensor p0 = flat.values.clone(), m0 = opt.exp_avg.clone(), v0 = opt.exp_avg_sq.clone();
  flat.grads.normal_();
  opt.step(0.01, at::ones({}));
  EXPECT_TRUE(at::equal(flat.values, p0));
  EXPECT_TRUE(at::equal(opt.exp_avg, m0));
  EXPECT_TRUE(at::equal(opt.exp_avg_sq, v0));
  EXPECT_EQ(opt.steps(), 5);
  opt.step(0.01, at::zeros({}));
  EXPECT_FALSE(at::equal(flat.values, p0));
  EXPECT_EQ(opt.steps(), 6);
}

// AdamW keeps its runs' views of its buffers from step to step (not made anew each step, which
// cost host time); a moment buffer replaced between steps (they are public) is the one updated.
TEST(AdamW, UpdatesAReplacedMomentBuffer) {
  at::manual_seed(3);
  TwinAdamW t;
  for (int step = 0; step < 3; ++step) {
    t.same_gradients();
    if (step == 2) {  // a copy in new memory, as a load that assigned the tensor would leave
      t.ob.exp_avg = t.ob.exp_avg.clone();
      t.ob.exp_avg_sq = t.ob.exp_avg_sq.clone();
    }
    t.oa.step(0.01, at::zeros({}));
    t.ob.step(0.01, at::zeros({}));
    ASSERT_TRUE(at::equal(t.fa.values, t.fb.values)) << "step " << step;
    ASSERT_TRUE(at::equal(t.oa.exp_avg, t.ob.exp_avg)) << "step " << step;
    ASSERT_TRUE(at::equal(t.oa.exp_avg_sq, t.ob.exp_avg_sq)) << "step " << step;
  }
}

// What a CUDA graph of the step replays (train.cuda_graph): the rate set apart, into the
// device scalar that the update reads. A rate set before each step gives the updates of
// step(rate): a stale rate (the first one kept) would not, as it changes every step here.
TEST(AdamW, ReadsTheRateSetBeforeTheStep) {
  at::manual_seed(2);
  TwinAdamW t;
  for (int step = 0; step < 4; ++step) {
    const double rate = 0.01 / (step + 1);
    t.same_gradients();
    t.oa.step(rate, at::zeros({}));
    t.ob.set_learning_rate(rate);
    t.ob.step(at::zeros({}));
    ASSERT_TRUE(at::equal(t.fa.values, t.fb.values)) << "step " << step;
  }
}

// train.cuda_graph is refused, naming the key and the fix, where a graph cannot hold the step;
// allowed at one rank with any comm, and at several with nccl, optim.zero 0 and one micro-batch.
TEST(CudaGraph, IsRefusedWhereAGraphCannotHoldTheStep) {
  const at::Device gpu(at::kCUDA, 0), cpu(at::kCPU);
  auto config = [](std::vector<std::string> sets) {
    config::Config c = config::Config::defaults();
    c.set("train.cuda_graph=true");
    for (const std::string& s : sets) c.set(s);
    return c;
  };
  auto refusal = [&](const config::Config& c, const at::Device& d, int world) -> std::string {
    try {
      train::check_cuda_graph(c, d, world);
    } catch (const std::invalid_argument& e) {
      return e.what();
    }
    return "";
  };
  EXPECT_NE(refusal(config({}), cpu, 1).find("needs a CUDA device, and this rank runs on cpu"),
            std::string::npos);
  EXPECT_NE(refusal(config({"optim.accum_steps=4"}), gpu, 1).find("optim.accum_steps = 4"),
            std::string::npos);
  EXPECT_NE(refusal(config({"optim.zero=1"}), gpu, 2).find("optim.zero = 1 at 2 ranks"),
            std::string::npos);
  EXPECT_NE(refusal(config({"dist.backend=mpi", "optim.zero=0"}), gpu, 2)
                .find("dist.backend = mpi at 2 ranks"),
            std::string::npos);
  for (const std::string& why :
       {refusal(config({}), cpu, 1), refusal(config({"optim.accum_steps=4"}), gpu, 1)})
    EXPECT_NE(why.find("train.cuda_graph=false"), std::string::npos) << why;
  EXPECT_EQ(refusal(config({"dist.backend=mpi", "optim.zero=1"}), gpu, 1), "");
  EXPECT_EQ(refusal(config({"optim.zero=0"}), gpu, 4), "");
  // optim.zero auto means 0 with a graph, at any world size (1 without, at several ranks).
  EXPECT_FALSE(train::zero_enabled("auto", 4, true, "sharded", /*cuda_graph=*/true));
  EXPECT_TRUE(train::zero_enabled("auto", 4, true, "sharded", /*cuda_graph=*/false));
  config::Config off = config({"optim.accum_steps=4"});
  off.set("train.cuda_graph=false");
  EXPECT_EQ(refusal(off, cpu, 2), "");
}

// train.cuda_graph auto: on at one rank on a GPU, where it measured faster; off on a CPU and at
// several ranks (never run there on GPUs); an explicit value is kept.
// train.attention, checked at set-up: the GPU's backends on a CPU run are an error naming the key.
TEST(Setup, AttentionBackendNamesTheKeyOnACpu) {
  const at::Device gpu(at::kCUDA, 0), cpu(at::kCPU);
  auto backend = [](const std::string& v, const at::Device& d) {
    config::Config c = config::Config::defaults();
    c.set("train.attention=" + v);
    return train::sdpa_backend(c, d);
  };
  EXPECT_EQ(config::Config::defaults().get_string("train.attention"), "auto");
  EXPECT_EQ(backend("auto", gpu), model::SdpaBackend::kAuto);
  EXPECT_EQ(backend("math", cpu), model::SdpaBackend::kMath);
  EXPECT_EQ(backend("cudnn", gpu), model::SdpaBackend::kCudnn);
  EXPECT_EQ(backend("efficient", gpu), model::SdpaBackend::kEfficient);
  for (const std::string v : {"cudnn", "efficient"}) {
    try {
      backend(v, cpu);
      ADD_FAILURE() << v << " on a CPU was not refused";
    } catch (const std::invalid_argument& e) {
      EXPECT_NE(std::string(e.what()).find("train.attention = " + v), std::string::npos)
          << e.what();
    }
  }
  config::Config c = config::Config::defaults();
  EXPECT_THROW(c.set("train.attention=flash"), std::exception) << "not a choice";
}

TEST(CudaGraph, AutoIsOnAtOneRankOnAGpuOnly) {
  const at::Device gpu(at::kCUDA, 0), cpu(at::kCPU);
  auto resolved = [](const at::Device& d, int world, std::vector<std::string> sets) {
    config::Config c = config::Config::defaults();
    for (const std::string& s : sets) c.set(s);
    train::resolve_cuda_graph(c, d, world);
    return c.get_string("train.cuda_graph");
  };
  EXPECT_EQ(config::Config::defaults().get_string("train.cuda_graph"), "auto");
  // Without src/cuda (no nvcc at configure time) there is no graph to capture.
  EXPECT_EQ(resolved(gpu, 1, {}), cuda::kernels_built() ? "true" : "false");
  EXPECT_EQ(resolved(cpu, 1, {}), "false");
  EXPECT_EQ(resolved(gpu, 2, {}), "false");
  EXPECT_EQ(resolved(gpu, 1, {"optim.accum_steps=2"}), "false");
  EXPECT_EQ(resolved(gpu, 8, {"train.cuda_graph=true"}), "true");
  EXPECT_EQ(resolved(gpu, 1, {"train.cuda_graph=false"}), "false");
}

// The CPU emulation of a CUDA graph replays work that launches the same operators on the same
// memory, whatever else the allocator did between the replays, and the work does run each time.
TEST(EmulatedGraph, ReplaysWorkWhoseOperatorsStayTheSame) {
  at::Tensor w = at::zeros({64}), x = at::ones({64}), lr = at::full({}, 0.5);
  train::EmulatedGraph graph;
  graph.capture([&] { w.add_(at::relu(x * lr) * 2.0); }, 4);
  std::vector<at::Tensor> held;  // the host allocating meanwhile moves nothing the work makes
  for (int64_t step = 5; step < 9; ++step) {
    held.push_back(at::empty({100 * step}));
    lr.fill_(0.25 * step);  // a device value written in place: the graph reads it
    EXPECT_NO_THROW(graph.replay(step));
  }
  EXPECT_FLOAT_EQ(w[0].item<float>(), 1.0f + 2.0f * 0.25f * (5 + 6 + 7 + 8));
}

namespace {
std::string replay_error(train::EmulatedGraph& graph, int64_t step) {
  try {
    graph.replay(step);
  } catch (const std::runtime_error& e) {
    return e.what();
  }
  return "";
}
}  // namespace

// What a real graph would replay wrongly, the emulation refuses, naming the operator: a number
// the host passes (fixed at the capture), a tensor made anew instead of written in place (the
// graph would read the capture's), a host branch, and a host read (refused by a capture).
TEST(EmulatedGraph, RefusesWhatTheHostDecidesInsideTheWork) {
  at::Tensor w = at::zeros({8}), x = at::ones({8});
  double lr = 0.1;
  train::EmulatedGraph number;
  number.capture([&] { w.add_(x, lr); }, 4);
  lr = 0.2;
  const std::string e1 = replay_error(number, 5);
  EXPECT_NE(e1.find("step 5's device work is not the one captured at step 4"), std::string::npos)
      << e1;
  EXPECT_NE(e1.find("aten::add_"), std::string::npos) << e1;
  EXPECT_NE(e1.find("0x1.999999999999ap-4"), std::string::npos) << e1;  // 0.1, every bit
  EXPECT_NE(e1.find("0x1.999999999999ap-3"), std::string::npos) << e1;  // 0.2

  at::Tensor sum = at::zeros({8});
  train::EmulatedGraph anew;
  anew.capture([&] { sum = sum + x; }, 4);
  const std::string e2 = replay_error(anew, 5);
  EXPECT_NE(e2.find("aten::add"), std::string::npos) << e2;
  EXPECT_NE(e2.find("a tensor made anew"), std::string::npos) << e2;

  int64_t calls = 0;
  train::EmulatedGraph branch;
  branch.capture([&] { (++calls % 2 ? w.mul_(2) : w.div_(2)); }, 4);
  EXPECT_NE(replay_error(branch, 5).find("aten::div_"), std::string::npos);

  train::EmulatedGraph read;
  try {
    read.capture([&] { w.add_(x.sum().item<float>()); }, 4);
    ADD_FAILURE() << "a host read was captured";
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find("reads a result on the host"), std::string::npos)
        << e.what();
  }
}

TEST(FlatParams, ParametersAreViewsAndDecayFollowsTimmsRule) {
  model::ModelSpec spec = model::variant("coatnet_nano_rw_224");
  spec.image_size = 64;
  spec.num_classes = 10;
  model::CoAtNet net(spec);
  train::FlatParams flat(*net);
  EXPECT_EQ(flat.parameter_count(), model::count_parameters(*net));
  // Each parameter starts 64-byte aligned (cuDNN's NHWC batch norm reads them with 16-byte
  // loads), the padding between them is zero, and the entries do not overlap.
  const auto* base = static_cast<const char*>(flat.values.data_ptr());
  int64_t end = 0;
  for (const train::FlatEntry& e : flat.entries) {
    const auto* p = static_cast<const char*>(e.param.data_ptr());
    EXPECT_EQ((p - base) % 64, 0) << e.name << " at offset " << e.offset;
    EXPECT_GE(e.offset, end) << e.name;
    EXPECT_EQ(flat.values.narrow(0, end, e.offset - end).count_nonzero().item<int64_t>(), 0);
    end = e.offset + e.numel;
  }
  EXPECT_LT(flat.numel() - flat.parameter_count(),
            static_cast<int64_t>(flat.entries.size()) * train::FlatParams::kAlignElements);
  int tables = 0;
  for (const train::FlatEntry& e : flat.entries) {
    const bool table = e.name.find("relative_position_bias_table") != std::string::npos;
    tables += table;
    EXPECT_EQ(e.decay, e.param.dim() >= 2 && !table) << e.name;
  }
  EXPECT_GT(tables, 0);
  // Backward order: the classifier (registered last) comes first.
  EXPECT_EQ(flat.entries.front().name.rfind("head.", 0), 0u) << flat.entries.front().name;
  flat.values.fill_(0.25);
  for (const auto& p : net->parameters()) EXPECT_EQ(p.sum().item<float>(), 0.25f * p.numel());
}

TEST(Schedule, WarmupThenCosineOrLinearToTheMinimum) {
  train::ScheduleOptions s;
  s.lr = 1.0;
  s.min_lr = 0.1;
  s.warmup_steps = 10;
  s.total_steps = 110;
  EXPECT_DOUBLE_EQ(train::lr_at(s, 0), 0.1);
  EXPECT_DOUBLE_EQ(train::lr_at(s, 9), 1.0);
  EXPECT_DOUBLE_EQ(train::lr_at(s, 10), 1.0);
  EXPECT_NEAR(train::lr_at(s, 60), 0.55, 1e-12);  // cosine midpoint
  EXPECT_NEAR(train::lr_at(s, 110), 0.1, 1e-12);
  s.type = "linear";
  EXPECT_NEAR(train::lr_at(s, 35), 1.0 - 0.9 * 0.25, 1e-12);
  s.type = "constant";
  EXPECT_DOUBLE_EQ(train::lr_at(s, 100), 1.0);
  s.type = "step";
  EXPECT_THROW(train::lr_at(s, 50), std::invalid_argument);
}

TEST(Loss, SoftTargetCrossEntropyEqualsLabelSmoothedCrossEntropy) {
  at::manual_seed(2);
  at::Tensor logits = at::randn({6, 7});
  at::Tensor targets = at::randint(7, {6}, at::kLong);
  at::Tensor valid = at::ones({6}, at::kBool);
  at::Tensor ours = train::classification_loss(logits, data::soft_targets(targets, 7, 0.1), valid,
                                               train::LossType::SoftmaxCE);
  at::Tensor ref = at::cross_entropy_loss(logits, targets, {}, at::Reduction::Mean, -100, 0.1);
  EXPECT_NEAR(ours.item<double>(), ref.item<double>(), 1e-6);
  // A masked row takes no part: the mean is over the valid rows.
  valid[5] = false;
  at::Tensor masked = train::classification_loss(logits, data::soft_targets(targets, 7, 0.1), valid,
                                                 train::LossType::SoftmaxCE);
  at::Tensor ref5 = at::cross_entropy_loss(logits.narrow(0, 0, 5), targets.narrow(0, 0, 5), {},
                                           at::Reduction::Mean, -100, 0.1);
  EXPECT_NEAR(masked.item<double>(), ref5.item<double>(), 1e-6);
  // Multi-label: mean sigmoid BCE.
  at::Tensor multi = (at::rand({6, 7}) > 0.7).to(at::kFloat);
  at::Tensor bce = train::classification_loss(logits, multi, at::ones({6}, at::kBool),
                                              train::LossType::SigmoidBCE);
  EXPECT_NEAR(bce.item<double>(),
              at::binary_cross_entropy_with_logits(logits, multi).item<double>(), 1e-6);
}

TEST(Ema, UpdatesTowardsTheWeightsAndSwaps) {
  Tiny m;
  train::FlatParams flat(m);
  train::ModelEma ema(flat, m, 0.9);
  at::Tensor start = flat.values.clone();
  flat.values.add_(1.0);
  ema.update(at::ones({}));  // a skipped step moves nothing
  EXPECT_TRUE(at::equal(ema.values, start));
  ema.update(at::zeros({}));
  EXPECT_TRUE(at::allclose(ema.values, start + 0.1, 1e-6, 1e-6));
  at::Tensor live = flat.values.clone();
  ema.swap();
  EXPECT_TRUE(at::allclose(flat.values, start + 0.1, 1e-6, 1e-6));
  ema.swap();
  EXPECT_TRUE(at::equal(flat.values, live));
}

TEST(ClipGradNorm, ScalesToTheMaximumAndReportsTheNormBefore) {
  at::Tensor found_inf = at::zeros({});
  at::Tensor g = at::full({4}, 3.0);  // norm 6
  EXPECT_NEAR(train::clip_grad_norm(g, 1.5, found_inf).item<double>(), 6.0, 1e-6);
  EXPECT_NEAR(g.norm().item<double>(), 1.5, 1e-5);
  at::Tensor small = at::full({4}, 0.1);
  train::clip_grad_norm(small, 1.5, found_inf);
  EXPECT_EQ(small[0].item<float>(), 0.1f);  // a coefficient of exactly 1: values unchanged
  EXPECT_EQ(found_inf.item<float>(), 0.0f);
  at::Tensor bad = at::ones({4});
  bad[1] = NAN;
  train::clip_grad_norm(bad, 1.5, found_inf);
  EXPECT_EQ(found_inf.item<float>(), 1.0f);  // a non-finite norm marks the step for skipping
  train::clip_grad_norm(small, 1.5, found_inf);
  EXPECT_EQ(found_inf.item<float>(), 1.0f);  // and a finite one never clears the mark
}

TEST(Precision, Fp16ScalerSkipsBacksOffAndGrows) {
  train::ScalerOptions o;
  o.init_scale = 1024;
  o.growth_interval = 3;
  auto p = train::make_precision("fp16", o);
  EXPECT_TRUE(p->skips_steps_normally());
  at::Tensor loss = at::full({}, 2.0);
  EXPECT_DOUBLE_EQ(p->scale_loss(loss).item<double>(), 2048.0);
  at::Tensor found_inf = at::zeros({});
  at::Tensor g = at::full({4}, 1024.0);
  p->unscale(g, found_inf);  // unscaled to 1
  EXPECT_EQ(found_inf.item<float>(), 0.0f);
  EXPECT_DOUBLE_EQ(g[0].item<double>(), 1.0);
  for (double bad : {INFINITY, NAN}) {
    at::Tensor h = at::ones({4});
    h[2] = bad;
    found_inf.zero_();
    p->unscale(h, found_inf);
    EXPECT_EQ(found_inf.item<float>(), 1.0f);
    p->update(found_inf);
  }
  EXPECT_DOUBLE_EQ(p->state().at("scale"), 256.0);  // halved twice
  found_inf.zero_();
  for (int i = 0; i < 2; ++i) p->update(found_inf);
  EXPECT_DOUBLE_EQ(p->state().at("scale"), 256.0);
  EXPECT_DOUBLE_EQ(p->state().at("clean_steps"), 2.0);
  p->update(found_inf);  // the third clean step in a row
  EXPECT_DOUBLE_EQ(p->state().at("scale"), 512.0);
  EXPECT_DOUBLE_EQ(p->state().at("clean_steps"), 0.0);
  auto q = train::make_precision("fp16", o);
  q->load_state(p->state());
  EXPECT_EQ(q->state(), p->state());
  EXPECT_DOUBLE_EQ(q->scale_loss(loss).item<double>(), 1024.0);
  EXPECT_FALSE(train::make_precision("bf16")->skips_steps_normally());
  EXPECT_THROW(train::make_precision("fp8"), std::invalid_argument);
}

TEST(Precision, Bf16AutocastsForwardOnlyInsideItsScope) {
  auto p = train::make_precision("bf16");
  torch::nn::Linear fc(8, 4);
  at::Tensor x = at::randn({2, 8});
  {
    auto scope = p->autocast(at::Device(at::kCPU));
    EXPECT_EQ(fc->forward(x).scalar_type(), at::kBFloat16);
  }
  EXPECT_EQ(fc->forward(x).scalar_type(), at::kFloat);
  EXPECT_EQ(train::make_precision("fp32")->autocast(at::Device(at::kCPU)), nullptr);
}

// auto: the rewrites of the model's arithmetic that measured faster on a GPU (bn_gelu_se_mean,
// the folds, the pointwise GEMMs) are on for a GPU run, off for a CPU run (never measured faster
// there), and an explicit value or list always wins.
TEST(Setup, AutoTurnsOnWhatMeasuredFasterOnAGpuOnly) {
  const at::Device cpu(at::kCPU), gpu(at::kCUDA, 0);
  const config::Config d = config::Config::defaults();
  const char* folds[] = {"train.pointwise_gemm", "train.bn_fold", "train.se_fold"};
  for (const char* key : folds) {
    EXPECT_EQ(d.get_string(key), "auto") << key;
    // The BatchNorm fold only where the expansion is wide: it lost at 4x (model/bn_fold.h).
    EXPECT_EQ(train::resolved_for(d, gpu).get_string(key),
              std::string(key) == "train.bn_fold" ? "wide" : "true")
        << key;
    EXPECT_EQ(train::resolved_for(d, cpu).get_string(key), "false") << key;
    // Measured in bf16: in float32 they would replace cuDNN's TF32 convolutions by full-float32
    // products. fp16 runs the same tensor cores as bf16.
    const config::Config fp32 = config::Config::load("", {"precision.backend=fp32"});
    EXPECT_EQ(train::resolved_for(fp32, gpu).get_string(key), "false") << key;
    const config::Config fp16 = config::Config::load("", {"precision.backend=fp16"});
    EXPECT_NE(train::resolved_for(fp16, gpu).get_string(key), "false") << key;
  }
  using Kernels = std::vector<std::string>;
  const Kernels on_gpu = coatnet::cuda::kernels_built() ? Kernels{"bn_gelu_se_mean"} : Kernels{};
  EXPECT_EQ(train::resolved_for(d, gpu).get_strings("train.cuda_kernels"), on_gpu)
      << "a build without nvcc gets no kernel by default, and no error";
  EXPECT_EQ(train::resolved_for(d, cpu).get_strings("train.cuda_kernels"), Kernels{});
  const config::Config off = config::Config::load(
      "", {"train.bn_fold=false", "train.se_fold=true", "train.cuda_kernels=[batch_prep]"});
  EXPECT_EQ(train::resolved_for(off, gpu).get_string("train.bn_fold"), "false");
  EXPECT_EQ(train::resolved_for(off, cpu).get_string("train.se_fold"), "true");
  EXPECT_EQ(train::resolved_for(off, gpu).get_strings("train.cuda_kernels"), Kernels{"batch_prep"});
  const config::Config both = config::Config::load("", {"train.cuda_kernels=[auto, batch_prep]"});
  const Kernels want = coatnet::cuda::kernels_built() ? Kernels{"bn_gelu_se_mean", "batch_prep"}
                                                      : Kernels{"batch_prep"};
  EXPECT_EQ(train::resolved_for(both, gpu).get_strings("train.cuda_kernels"), want);
}
