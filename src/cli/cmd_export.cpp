// coatnet export CKPT --out model.safetensors [--ema]: a checkpoint's weights as one
// safetensors file with timm's names (for timm, `coatnet eval --weights`, `--init-from`).
#include <cstdio>
#include <filesystem>

#include "checkpoint/checkpointer.h"
#include "checkpoint/manifest.h"
#include "checkpoint/store.h"
#include "cli/args.h"
#include "cli/commands.h"
#include "config/config.h"
#include "model/coatnet.h"
#include "model/weights.h"

namespace coatnet::cli {

int cmd_export(int argc, char** argv) {
  ArgParser p("export",
              "Write the model weights of a checkpoint (sharded or consolidated, saved at any "
              "world size) to one safetensors file with timm's tensor names. The model is built "
              "from the config.yaml saved in the checkpoint.");
  p.positional("CKPT", "a step-… directory, or a checkpoint directory (its newest valid one)")
      .required("out", "FILE", "the safetensors file to write")
      .flag("ema", "export the EMA weights instead of the live ones");
  return run_command(p, argc, argv, [&] {
    std::vector<std::string> skipped;
    const std::string dir = checkpoint::resolve_checkpoint(p.get("CKPT"), &skipped);
    for (const auto& s : skipped) std::fprintf(stderr, "skipped %s\n", s.c_str());
    if (checkpoint::is_step_dir(p.get("CKPT"))) {  // a named one has not been checked yet
      const std::string problem = checkpoint::check_checkpoint(dir, 0, 1);
      if (!problem.empty()) throw std::runtime_error(problem);
    }
    config::Config cfg =
        config::Config::load((std::filesystem::path(dir) / checkpoint::kConfigName).string(), {});
    model::CoAtNet net(model::spec_from_config(cfg));
    checkpoint::load_model_weights(dir, *net, p.has("ema"));
    model::save_weights(*net, p.get("out"));
    std::printf("wrote %s (%s weights of %s, step %lld)\n", p.get("out").c_str(),
                p.has("ema") ? "EMA" : "model", dir.c_str(),
                static_cast<long long>(checkpoint::read_manifest(dir).step));
    return 0;
  });
}

}  // namespace coatnet::cli
