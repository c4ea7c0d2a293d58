// coatnet info: what a model is — parameters, GMACs at its image size, per-stage shapes.
#include <torch/nn/module.h>

#include <cstdio>
#include <cstdlib>
#include <optional>
#include <stdexcept>

#include "cli/args.h"
#include "cli/commands.h"
#include "config/config.h"
#include "model/coatnet.h"
#include "train/memory_plan.h"
#include "util/json.h"
#include "util/text.h"

namespace coatnet::cli {

namespace {

std::string csv(const std::vector<int>& v) {
  std::vector<std::string> parts;
  for (int x : v) parts.push_back(std::to_string(x));
  return text::join(parts, ",");
}

int64_t positive(const std::string& value, const char* option) {
  char* end = nullptr;
  const long long v = std::strtoll(value.c_str(), &end, 10);
  if (value.empty() || *end != '\0' || v < 1)
    throw std::invalid_argument(std::string(option) + " must be a positive integer, got '" + value +
                                "'");
  return v;
}

at::ScalarType dtype_of(const std::string& precision) {
  if (precision == "fp32") return at::kFloat;
  if (precision == "bf16") return at::kBFloat16;
  if (precision == "fp16") return at::kHalf;
  throw std::invalid_argument("--precision must be fp32, bf16 or fp16, got '" + precision + "'");
}

bool zero_of(const std::string& zero, int world) {
  if (zero != "auto" && zero != "0" && zero != "1")
    throw std::invalid_argument("--zero must be 0, 1 or auto, got '" + zero + "'");
  return zero == "1" || (zero == "auto" && world > 1);
}

std::string gib(int64_t bytes) {
  char b[32];
  std::snprintf(b, sizeof b, "%.2f GiB", static_cast<double>(bytes) / (1 << 30));
  return b;
}

// --batch given: the per-rank memory plan (train/memory_plan.h).
struct PlanRequest {
  int world = 1;
  int64_t batch = 0, per_rank = 0;
  std::string precision;
  bool ema = false, zero = false;
};

json::Value memory_json(const train::MemoryPlan& m, const PlanRequest& r) {
  json::Value j = json::Value::object();
  j["world_size"] = r.world;
  j["batch"] = r.batch;
  j["per_rank_batch"] = r.per_rank;
  j["precision"] = r.precision;
  j["zero"] = r.zero ? 1 : 0;
  j["params_bytes"] = m.params_bytes;
  j["grads_bytes"] = m.grads_bytes;
  j["optimizer_bytes"] = m.optimizer_bytes;
  j["ema_bytes"] = m.ema_bytes;
  j["activations_bytes"] = m.activations_bytes;
  j["per_image_bytes"] = m.per_image_bytes;
  j["step_fixed_bytes"] = m.step_fixed_bytes;
  j["total_bytes"] = m.total();
  return j;
}

void print_memory(const train::MemoryPlan& m, const PlanRequest& r) {
  std::printf("  memory per rank: world size %d, batch %lld (%lld per rank), %s, %s\n", r.world,
              static_cast<long long>(r.batch), static_cast<long long>(r.per_rank),
              r.precision.c_str(),
              r.zero ? "ZeRO-1 (optimizer state and EMA split over the ranks)" : "optim.zero 0");
  auto row = [](const char* what, int64_t bytes, const std::string& note) {
    std::printf("    %-13s %12s  %s\n", what, gib(bytes).c_str(), note.c_str());
  };
  row("parameters", m.params_bytes, "fp32, flat");
  row("gradients", m.grads_bytes,
      r.zero ? "fp32, flat, and the owned range reduced" : "fp32, flat");
  row("optimizer", m.optimizer_bytes,
      r.zero ? "AdamW moments, fp32, 1/" + std::to_string(r.world) + " of them"
             : "AdamW moments, fp32");
  row("EMA", m.ema_bytes, r.ema ? "train.ema_decay > 0" : "none (--ema to count it)");
  row("activations", m.activations_bytes,
      text::thousands(m.per_image_bytes / (1 << 10)) +
          " KiB per image: a step's peak, measured on the CPU");
  row("step, fixed", m.step_fixed_bytes, "autocast's weight copies and temporaries");
  row("total", m.total(), "before the allocator's and the libraries' own");
}

}  // namespace

int cmd_info(int argc, char** argv) {
  ArgParser p("info",
              "Build a CoAtNet and report its parameters (key params), GMACs at the image "
              "size (one image, multiply-accumulates) and the output shape of each stage.");
  add_model_options(p);
  p.option("batch", "B",
           "global batch: add the per-rank memory plan (training state, and a step's "
           "peak working memory, measured on the CPU at 1 and 2 images)")
      .option("world-size", "W", "ranks sharing the batch (with --batch)", "1")
      .option("precision", "P", "fp32, bf16 or fp16: the compute dtype (with --batch)", "bf16")
      .flag("ema", "count an EMA of the weights (train.ema_decay > 0; with --batch)")
      .option("zero", "0|1",
              "optim.zero: 1 splits the optimizer state and the EMA over the ranks (ZeRO-1); "
              "auto: 1 when --world-size > 1 (with --batch)",
              "auto")
      .flag("json", "print one JSON object on stdout");
  p.epilog(
      "examples: coatnet info --model coatnet_0_224 --image-size 384 --json\n"
      "          coatnet info --model coatnet_3_224 --batch 4096 --world-size 64 --precision bf16\n"
      "          coatnet info --model coatnet_4_224 --batch 64 --world-size 8 --zero 0 --ema");
  return run_command(p, argc, argv, [&] {
    model::ModelSpec spec = model::spec_from_config(model_config_from(p));
    model::CoAtNet net(spec);
    int64_t params = model::count_parameters(*net);
    double gmacs = static_cast<double>(model::count_macs(net)) / 1e9;
    auto shapes = model::stage_shapes(spec);
    std::optional<train::MemoryPlan> memory;
    PlanRequest r;
    if (!p.get("batch").empty()) {
      r.world = static_cast<int>(positive(p.get("world-size"), "--world-size"));
      r.batch = positive(p.get("batch"), "--batch");
      r.per_rank = (r.batch + r.world - 1) / r.world;
      r.precision = p.get("precision");
      r.ema = p.has("ema");
      r.zero = zero_of(p.get("zero"), r.world);
      memory = train::plan_memory(net, {r.per_rank, dtype_of(r.precision), r.ema, r.world, r.zero});
    }
    if (p.has("json")) {
      json::Value out = json::Value::object();
      out["model"] = spec.name;
      out["image_size"] = spec.image_size;
      out["in_chans"] = spec.in_chans;
      out["num_classes"] = spec.num_classes;
      out["layout"] = spec.layout;
      out["params"] = params;
      out["gmacs"] = gmacs;
      json::Value stages = json::Value::array();
      for (const auto& s : shapes) {
        json::Value st = json::Value::object();
        st["name"] = s.name;
        st["channels"] = s.channels;
        st["height"] = s.height;
        st["width"] = s.width;
        stages.push_back(st);
      }
      out["stages"] = stages;
      if (memory) out["memory"] = memory_json(*memory, r);
      std::puts(out.dump().c_str());
      return 0;
    }
    std::printf("%s  image %dx%d, %d channels, %d classes\n", spec.name.c_str(), spec.image_size,
                spec.image_size, spec.in_chans, spec.num_classes);
    std::printf("  layout %s  depths %s  widths %s  stem %s  head %d\n", spec.layout.c_str(),
                csv(spec.depths).c_str(), csv(spec.widths).c_str(), csv(spec.stem_widths).c_str(),
                spec.head_hidden);
    std::printf("  params %s (%.2f M)\n", text::thousands(params).c_str(), params / 1e6);
    std::printf("  GMACs  %.3f\n", gmacs);
    std::printf("  %-10s output (C x H x W)\n", "stage");
    for (const auto& s : shapes)
      std::printf("  %-10s %d x %d x %d\n", s.name.c_str(), s.channels, s.height, s.width);
    if (memory) print_memory(*memory, r);
    return 0;
  });
}

}  // namespace coatnet::cli
