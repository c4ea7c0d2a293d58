// coatnet forward: run a model with given weights on the first tensor of a safetensors file and
// write the logits — for checking weights and parity with the reference implementation.
#include <ATen/ATen.h>
#include <torch/nn/module.h>

#include <cstdio>
#include <sstream>

#include "cli/args.h"
#include "cli/commands.h"
#include "config/config.h"
#include "model/coatnet.h"
#include "model/weights.h"

namespace coatnet::cli {

int cmd_forward(int argc, char** argv) {
  ArgParser p("forward",
              "Run a model (eval mode unless --train) on the first tensor of --input, an "
              "(B,C,H,W) float tensor, and write its logits to --output as tensor 'logits'.");
  add_model_options(p);
  p.required("weights", "W.safetensors", "weights with timm state_dict names")
      .required("input", "X.safetensors", "input images; the first tensor is used")
      .required("output", "Y.safetensors", "where the logits are written")
      .flag("train", "training mode: batch statistics in BatchNorm, stochastic depth on");
  return run_command(p, argc, argv, [&] {
    model::ModelSpec spec = model::spec_from_config(model_config_from(p));
    model::CoAtNet net(spec);
    auto report = model::load_weights(*net, p.get("weights"));
    for (const auto& name : report.resized)
      std::fprintf(stderr, "coatnet forward: resized %s to the %d px grid\n", name.c_str(),
                   spec.image_size);
    if (!report.counters_zeroed.empty())
      std::fprintf(stderr, "coatnet forward: %zu BatchNorm num_batches_tracked absent: set to 0\n",
                   report.counters_zeroed.size());
    auto input = model::read_safetensors(p.get("input"));
    if (input.tensors.empty()) throw std::runtime_error(p.get("input") + ": holds no tensor");
    const auto& [in_name, x] = input.tensors.front();
    if (x.dim() != 4 || x.size(1) != spec.in_chans || x.size(2) != spec.image_size ||
        x.size(3) != spec.image_size) {
      std::ostringstream os;
      os << p.get("input") << ": tensor '" << in_name << "' has shape " << x.sizes()
         << ", the model expects (B, " << spec.in_chans << ", " << spec.image_size << ", "
         << spec.image_size << "); hint: --image-size";
      throw std::runtime_error(os.str());
    }
    net->train(p.has("train"));
    at::Tensor logits;
    {
      at::NoGradGuard no_grad;
      logits = net->forward(x.to(at::kFloat));
    }
    model::write_safetensors(p.get("output"), {{"logits", logits}});
    std::fprintf(stderr, "coatnet forward: %s -> logits %ld x %ld in %s\n", in_name.c_str(),
                 static_cast<long>(logits.size(0)), static_cast<long>(logits.size(1)),
                 p.get("output").c_str());
    return 0;
  });
}

}  // namespace coatnet::cli
