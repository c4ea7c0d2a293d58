// Each opt-in of the model's arithmetic against the default, on one model in one process: a
// training step's forward + backward (cross-entropy on random labels, no optimizer step; the same
// for every variant) timed in interleaved rounds (default, bn_fold, ..., default, bn_fold, ...),
// so that a drift of the machine falls on every variant alike. One process builds the model and
// the batch once, which takes a GPU a fraction of the time of one training run per variant. Each
// variant's loss on the same batch and weights (nothing is updated) is printed beside the
// default's: the opt-ins change rounding only. On a GPU: bf16 autocast and cuDNN's benchmark
// mode, as `coatnet train` runs there. The batch is channels-last on either device (the opt-ins
// apply to channels-last activations). A CPU run (float32) is the tool's own test.
//   bench_optins --device cuda --model coatnet_0_224 --batch 128 --json
#include <ATen/ATen.h>
#include <torch/cuda.h>
#include <torch/utils.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <optional>
#include <set>
#include <stdexcept>
#include <string>
#include <vector>

#include "cli/args.h"
#include "cuda/batch_prep.h"
#include "cuda/bn_gelu.h"
#include "cuda/dw_conv.h"
#include "model/bn_fold.h"
#include "model/bn_gelu.h"
#include "model/coatnet.h"
#include "model/layers.h"
#include "train/precision.h"
#include "util/json.h"
#include "util/text.h"

using namespace coatnet;

namespace {

// The opt-ins one at a time; a variant is one of them, "default" (none), "gpu_defaults" (what a
// GPU run gets by default) or "all" (all but bn_fold_every). bn_gelu_se_mean is bn_gelu whose
// operation also takes the squeeze-excitation's mean; dw_conv_dgrad the depthwise stride-2
// convolution's input-gradient kernel. bn_fold folds the wide expansions only (train.bn_fold: wide,
// a GPU's default), bn_fold_every every block's (true).
const std::vector<std::string> kOptIns{"bn_fold",      "se_fold",         "pointwise_gemm",
                                       "bn_gelu",      "bn_gelu_se_mean", "dw_conv_dgrad",
                                       "bn_fold_every"};
// What a GPU run gets by default (train.cuda_kernels auto and the folds): the first five.
const size_t kGpuDefaults = 5;

struct Variant {
  std::string name;
  std::set<std::string> on;  // the opt-ins it turns on
};

Variant parse_variant(const std::string& name) {
  if (name == "default") return {name, {}};
  if (name == "all") {  // bn_fold as a GPU run has it (wide), not every block's
    Variant all{name, {kOptIns.begin(), kOptIns.end()}};
    all.on.erase("bn_fold_every");
    return all;
  }
  if (name == "gpu_defaults") return {name, {kOptIns.begin(), kOptIns.begin() + kGpuDefaults}};
  if (std::find(kOptIns.begin(), kOptIns.end(), name) != kOptIns.end()) return {name, {name}};
  std::vector<std::string> known{"default", "gpu_defaults", "all"};
  known.insert(known.end(), kOptIns.begin(), kOptIns.end());
  throw std::invalid_argument("--variants: unknown variant '" + name + "'" +
                              text::did_you_mean(name, known) + "; the variants are " +
                              text::join(known, ", "));
}

// A variant's settings for as long as it lives (the kernels of src/cuda only where built).
struct VariantScope {
  explicit VariantScope(const Variant& v) {
    if (v.on.count("bn_fold_every"))
      bn_fold.emplace(model::BnFold::kEvery);
    else if (v.on.count("bn_fold"))
      bn_fold.emplace(model::BnFold::kWide);
    if (v.on.count("se_fold")) se_fold.emplace(true);
    if (v.on.count("pointwise_gemm")) gemm.emplace(true);
    const bool se_mean = v.on.count("bn_gelu_se_mean") > 0;
    if ((v.on.count("bn_gelu") || se_mean) && cuda::kernels_built())
      bn_gelu.emplace(&cuda::bn_gelu_kernels());
    if (se_mean && cuda::kernels_built()) bn_gelu_se_mean.emplace(true);
    if (v.on.count("dw_conv_dgrad") && cuda::kernels_built())
      dw_conv.emplace(&cuda::dw_conv_kernels());
  }
  std::optional<model::BnFoldScope> bn_fold;
  std::optional<model::SeFoldScope> se_fold;
  std::optional<model::PointwiseGemmScope> gemm;
  std::optional<model::BnGeluKernelsScope> bn_gelu;
  std::optional<model::BnGeluSeMeanScope> bn_gelu_se_mean;
  std::optional<model::DwConvKernelsScope> dw_conv;
};

}  // namespace

int main(int argc, char** argv) {
  cli::ArgParser p("bench_optins",
                   "Time a training step's forward+backward with each opt-in of the model's "
                   "arithmetic against the default, interleaved, in one process.");
  p.option("model", "NAME", "variant", "coatnet_0_224")
      .option("image-size", "N", "input size", "224")
      .option("batch", "B", "images per step", "128")
      .option("device", "cpu|cuda", "where to run (cuda: bf16 autocast)", "cuda")
      .option("variants", "LIST",
              "comma-separated: default, bn_fold, se_fold, pointwise_gemm, bn_gelu, "
              "bn_gelu_se_mean, dw_conv_dgrad, bn_fold_every, gpu_defaults, all",
              "default,bn_fold,se_fold,pointwise_gemm,bn_gelu,all")
      .option("warmup", "N", "untimed steps per variant first", "3")
      .option("steps", "N", "timed steps per variant and round", "10")
      .option("rounds", "N", "interleaved rounds; the median round counts", "3")
      .flag("json", "one JSON object per variant, then one with all of them");
  return cli::run_command(p, argc, argv, [&] {
    const bool gpu = p.get("device") == "cuda";
    if (!gpu && p.get("device") != "cpu")
      throw std::invalid_argument("--device: '" + p.get("device") + "' is neither cpu nor cuda");
    if (gpu && !torch::cuda::is_available()) {
      std::fprintf(stderr, "bench_optins: skipped: no GPU visible (--device cpu runs here)\n");
      return 77;
    }
    std::vector<Variant> variants;
    for (const std::string& name : text::split(p.get("variants"), ','))
      if (!name.empty()) variants.push_back(parse_variant(name));
    if (variants.empty() || variants.front().name != "default")
      variants.insert(variants.begin(), parse_variant("default"));
    const at::Device device = gpu ? at::Device(at::kCUDA, 0) : at::Device(at::kCPU);
    if (gpu) at::globalContext().setBenchmarkCuDNN(true);

    torch::manual_seed(0);  // the same weights and batch in every run
    model::ModelSpec spec = model::variant(p.get("model"));
    spec.image_size = p.get_int("image-size");
    model::CoAtNet net(spec);
    net->to(device);
    net->train();
    const int batch = p.get_int("batch");
    const at::Tensor x =
        at::randn({batch, spec.in_chans, spec.image_size, spec.image_size}, device)
            .contiguous(at::MemoryFormat::ChannelsLast);  // where the opt-ins apply
    const at::Tensor labels =
        at::randint(spec.num_classes, {batch}, at::TensorOptions().dtype(at::kLong).device(device));
    auto sync = [&] {
      if (gpu) torch::cuda::synchronize();
    };
    auto step = [&]() -> at::Tensor {  // the loss, not read (reading it waits for the GPU)
      for (auto& param : net->parameters()) param.mutable_grad() = at::Tensor();
      at::Tensor loss;
      {
        std::optional<train::AutocastScope> bf16;
        if (gpu) bf16.emplace(at::kCUDA, at::kBFloat16);
        loss = at::cross_entropy_loss(net->forward(x).to(at::kFloat), labels);
      }
      loss.backward();
      return loss.detach();
    };
    // Warm-up (cuDNN's benchmark mode times its algorithms at each new shape) and each variant's
    // loss on the same batch and weights.
    std::vector<double> loss(variants.size());
    for (size_t v = 0; v < variants.size(); ++v) {
      VariantScope scope(variants[v]);
      for (int i = 0; i < p.get_int("warmup"); ++i) (void)step();
      loss[v] = step().item<double>();
    }
    const int steps = p.get_int("steps"), rounds = p.get_int("rounds");
    std::vector<std::vector<double>> ms(variants.size());
    for (int r = 0; r < rounds; ++r)
      for (size_t v = 0; v < variants.size(); ++v) {
        VariantScope scope(variants[v]);
        sync();
        const auto t0 = std::chrono::steady_clock::now();
        for (int i = 0; i < steps; ++i) (void)step();
        sync();
        ms[v].push_back(
            std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0)
                .count() /
            steps);
      }
    json::Value all = json::Value::array();
    double default_ms = 0;
    for (size_t v = 0; v < variants.size(); ++v) {
      std::sort(ms[v].begin(), ms[v].end());
      const double median = ms[v][ms[v].size() / 2];
      if (v == 0) default_ms = median;
      json::Value row{{"variant", variants[v].name},
                      {"ms_per_step", median},
                      {"images_per_s", batch * 1000.0 / median},
                      {"vs_default", default_ms / median},
                      {"loss", loss[v]},
                      {"loss_vs_default", (loss[v] - loss[0]) / loss[0]}};
      if (p.has("json")) {
        std::puts(row.dump().c_str());
      } else {
        std::printf("%-17s %8.2f ms/step  %8.1f images/s  %.3fx default  loss %.5f\n",
                    variants[v].name.c_str(), median, batch * 1000.0 / median, default_ms / median,
                    loss[v]);
      }
      all.push_back(std::move(row));
    }
    if (p.has("json")) {
      json::Value out = json::Value::object();
      out["model"] = spec.name;
      out["image_size"] = spec.image_size;
      out["batch"] = batch;
      out["device"] = gpu ? "cuda" : "cpu";
      out["dtype"] = gpu ? "bf16" : "fp32";
      out["steps"] = steps;
      out["rounds"] = rounds;
      out["cuda_kernels_built"] = cuda::kernels_built();
      out["optins"] = std::move(all);
      std::puts(out.dump().c_str());
    }
    std::fflush(stdout);
    return 0;
  });
}
