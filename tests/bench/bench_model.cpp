// Forward+backward throughput of a CoAtNet on this machine's CPU (or GPU with --cuda): train
// mode, cross-entropy on random labels, no optimizer step. Its Python twin,
// timm_model_bench.py, times timm's same model under the same torch for the ratio.
//   bench_model --model coatnet_0_224 --batch 8 --steps 5 --json
#include <ATen/ATen.h>
#include <ATen/Parallel.h>

#include <chrono>
#include <cstdio>

#include "cli/args.h"
#include "model/coatnet.h"
#include "util/json.h"

using namespace coatnet;

int main(int argc, char** argv) {
  cli::ArgParser p("bench_model", "Time forward+backward of a CoAtNet (train mode).");
  p.option("model", "NAME", "variant", "coatnet_0_224")
      .option("image-size", "N", "input size", "224")
      .option("batch", "B", "images per step", "8")
      .option("warmup", "N", "untimed steps first", "2")
      .option("steps", "N", "timed steps", "5")
      .option("threads", "N", "intra-op threads; 0 = torch default", "0")
      .flag("json", "print one JSON object on stdout");
  return cli::run_command(p, argc, argv, [&] {
    if (p.get_int("threads") > 0) at::set_num_threads(p.get_int("threads"));
    model::ModelSpec spec = model::variant(p.get("model"));
    spec.image_size = p.get_int("image-size");
    model::CoAtNet net(spec);
    net->train();
    const int batch = p.get_int("batch");
    at::Tensor x = at::randn({batch, spec.in_chans, spec.image_size, spec.image_size});
    at::Tensor y = at::randint(spec.num_classes, {batch}, at::kLong);
    auto step = [&] {
      for (auto& param : net->parameters()) param.mutable_grad() = at::Tensor();
      at::Tensor loss = at::cross_entropy_loss(net->forward(x), y);
      loss.backward();
    };
    for (int i = 0; i < p.get_int("warmup"); ++i) step();
    const int steps = p.get_int("steps");
    auto t0 = std::chrono::steady_clock::now();
    for (int i = 0; i < steps; ++i) step();
    double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    double ips = batch * steps / seconds;
    if (p.has("json")) {
      json::Value out = json::Value::object();
      out["impl"] = "coatnet";
      out["model"] = spec.name;
      out["batch"] = batch;
      out["image_size"] = spec.image_size;
      out["threads"] = at::get_num_threads();
      out["steps"] = steps;
      out["seconds"] = seconds;
      out["images_per_s"] = ips;
      std::puts(out.dump().c_str());
    } else {
      std::printf("coatnet %s batch %d @%d: %.2f images/s forward+backward (%d threads)\n",
                  spec.name.c_str(), batch, spec.image_size, ips, at::get_num_threads());
    }
    return 0;
  });
}
