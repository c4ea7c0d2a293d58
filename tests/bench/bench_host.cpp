// What each rewrite of the MBConv block's arithmetic costs the host, against the ATen composite
// it replaces: ATen operator calls and microseconds per forward + backward, on the CPU at a shape
// so small that the arithmetic itself costs next to nothing. On a GPU every such call is a kernel
// the host launches, and a step whose host launches slower than the GPU runs leaves the GPU idle
// (docs/GPU.md): this says which rewrites add host work, and how much, without a GPU.
//   bench_host [--rounds N] [--json]
#include <ATen/ATen.h>
#include <ATen/record_function.h>
#include <torch/autograd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <string>
#include <utility>
#include <vector>

#include "cli/args.h"
#include "model/bn_fold.h"
#include "model/layers.h"
#include "util/json.h"

using namespace coatnet;

namespace {

std::atomic<int64_t> g_ops{0};

struct Cost {
  double ops = 0, us = 0;
};

// One forward + backward: the gradients of the input and every parameter.
void step(const std::function<at::Tensor()>& forward, const std::vector<at::Tensor>& params) {
  const at::Tensor y = forward();
  (void)torch::autograd::grad({y}, params, {at::ones_like(y)});
}

// ATen operator calls of one step (every operator, nested ones included: on a CPU that counts
// some that a GPU runs inside one kernel, such as a scalar's or a mixed dtype's conversion).
double operator_calls(const std::function<void()>& once) {
  g_ops = 0;
  at::RecordFunctionGuard on(true);
  const auto handle = at::addThreadLocalCallback(
      at::RecordFunctionCallback([](const at::RecordFunction&)
                                     -> std::unique_ptr<at::ObserverContext> {
        ++g_ops;
        return nullptr;
      }).scopes({at::RecordScope::FUNCTION, at::RecordScope::BACKWARD_FUNCTION}));
  once();
  at::removeCallback(handle);
  return static_cast<double>(g_ops.load());
}

// Operator calls and microseconds per step of the rewrite and the composite: the median over
// `rounds` of the mean of 20 steps each, the two interleaved (the machine's noise hits both).
std::pair<Cost, Cost> costs(const std::function<void()>& rewrite,
                            const std::function<void()>& composite, int rounds) {
  for (int i = 0; i < 3; ++i) rewrite(), composite();
  Cost r, c;
  r.ops = operator_calls(rewrite);
  c.ops = operator_calls(composite);
  std::vector<double> ur, uc;
  auto mean_us = [](const std::function<void()>& f) {
    const auto t0 = std::chrono::steady_clock::now();
    for (int i = 0; i < 20; ++i) f();
    return std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now() - t0)
               .count() /
           20;
  };
  for (int k = 0; k < rounds; ++k) {
    ur.push_back(mean_us(rewrite));
    uc.push_back(mean_us(composite));
  }
  for (auto* v : {&ur, &uc}) std::sort(v->begin(), v->end());
  r.us = ur[ur.size() / 2];
  c.us = uc[uc.size() / 2];
  return {r, c};
}

json::Value row(const char* name, const std::pair<Cost, Cost>& c) {
  const auto& [rewrite, composite] = c;
  return json::Value{
      {"rewrite", name},  {"ops", rewrite.ops},           {"composite_ops", composite.ops},
      {"us", rewrite.us}, {"composite_us", composite.us}, {"extra_us", rewrite.us - composite.us}};
}

at::Tensor channels_last(int64_t n, int64_t c, int64_t hw) {
  return at::randn({n, c, hw, hw}).contiguous(at::MemoryFormat::ChannelsLast).requires_grad_();
}

}  // namespace

int main(int argc, char** argv) {
  cli::ArgParser p("bench_host",
                   "ATen operator calls and microseconds of the host per forward + backward of "
                   "each rewrite of the MBConv block's arithmetic (train.bn_fold, train.se_fold, "
                   "train.pointwise_gemm) against its composite, on the CPU at a shape so small "
                   "that the arithmetic costs next to nothing: the host work each adds per block.");
  p.option("rounds", "N", "interleaved rounds of 20 steps each; the median round counts", "15")
      .flag("json", "one JSON object per rewrite, then one with all of them");
  return cli::run_command(p, argc, argv, [&] {
    at::set_num_threads(1);
    torch::manual_seed(0);
    const int rounds = p.get_int("rounds");
    const int64_t n = 2, in = 8, out = 32, hw = 2;
    std::vector<json::Value> rows;
    {  // pre-norm, expansion, norm1
      torch::nn::BatchNorm2d bn0 = model::make_bn(static_cast<int>(in), 1e-5);
      torch::nn::BatchNorm2d bn1 = model::make_bn(static_cast<int>(out), 1e-5);
      torch::nn::Conv2d c = model::make_conv(static_cast<int>(in), static_cast<int>(out), 1, 1);
      const at::Tensor x = channels_last(n, in, hw);
      const std::vector<at::Tensor> w{x, bn0->weight, bn0->bias, c->weight, bn1->weight, bn1->bias};
      rows.push_back(
          row("bn_fold",
              costs([&] { step([&] { return model::bn_conv_bn(*bn0, *c, *bn1, x); }, w); },
                    [&] { step([&] { return bn1->forward(c->forward(bn0->forward(x))); }, w); },
                    rounds)));
    }
    {  // the gate and the projection
      torch::nn::Conv2d c =
          model::make_conv(static_cast<int>(out), static_cast<int>(in), 1, 1, true);
      const at::Tensor x = channels_last(n, out, hw);
      const at::Tensor gate = at::rand({n, out, 1, 1}).requires_grad_();
      const std::vector<at::Tensor> w{x, gate, c->weight, c->bias};
      rows.push_back(
          row("se_fold",
              costs([&] { step([&] { return model::gated_pointwise_conv(c, x, gate); }, w); },
                    [&] { step([&] { return c->forward(x * gate); }, w); }, rounds)));
    }
    {  // a 1x1 convolution with a bias
      const at::Tensor x = channels_last(n, in, hw);
      const at::Tensor wt = (at::randn({out, in, 1, 1}) * 0.1).requires_grad_();
      const at::Tensor b = at::randn({out}).requires_grad_();
      const std::vector<at::Tensor> w{x, wt, b};
      rows.push_back(
          row("pointwise_gemm",
              costs([&] { step([&] { return model::pointwise_conv_gemm(x, wt, b); }, w); },
                    [&] { step([&] { return at::conv2d(x, wt, b); }, w); }, rounds)));
    }
    if (p.has("json")) {
      for (const json::Value& r : rows) std::printf("%s\n", r.dump().c_str());
      std::printf("%s\n",
                  json::Value{{"device", "cpu"}, {"threads", 1}, {"rows", rows}}.dump().c_str());
    } else {
      std::printf("%-15s %9s %9s %11s %11s\n", "rewrite", "ops", "composite", "us", "composite");
      for (const json::Value& r : rows)
        std::printf("%-15s %9.0f %9.0f %11.1f %11.1f\n", r["rewrite"].get<std::string>().c_str(),
                    r["ops"].get<double>(), r["composite_ops"].get<double>(), r["us"].get<double>(),
                    r["composite_us"].get<double>());
    }
    return 0;
  });
}
