#include "cli/args.h"
#include "cli/commands.h"
#include "config/config.h"

namespace coatnet::cli {

void add_model_options(ArgParser& p) {
  p.option("model", "NAME", "variant, e.g. coatnet_0_224, or 'custom' with --set model.*", "")
      .option("image-size", "N", "input size in pixels (bias tables sized for it)")
      .option("num-classes", "K", "classifier outputs")
      .option("config", "FILE", "YAML config whose model.* keys describe the model")
      .repeated("set", "KEY=VALUE", "override a config key, e.g. model.layout=CTTT");
}

config::Config model_config_from(const ArgParser& p) {
  std::vector<std::string> sets = p.all("set");
  if (p.has("model")) sets.push_back("model.name=" + p.get("model"));
  if (p.has("image-size")) sets.push_back("model.image_size=" + p.get("image-size"));
  if (p.has("num-classes")) sets.push_back("model.num_classes=" + p.get("num-classes"));
  if (!p.has("model") && !p.has("config"))
    throw UsageError("give --model NAME (or --config FILE with a model section)");
  return config::Config::load(p.get("config"), sets);
}

}  // namespace coatnet::cli
