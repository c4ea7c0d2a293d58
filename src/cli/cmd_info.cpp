// coatnet info: what a model is — parameters, GMACs at its image size, per-stage shapes.
#include <torch/nn/module.h>

#include <cstdio>

#include "cli/args.h"
#include "cli/commands.h"
#include "config/config.h"
#include "model/coatnet.h"
#include "util/json.h"
#include "util/text.h"

namespace coatnet::cli {

namespace {

std::string csv(const std::vector<int>& v) {
  std::vector<std::string> parts;
  for (int x : v) parts.push_back(std::to_string(x));
  return text::join(parts, ",");
}

}  // namespace

int cmd_info(int argc, char** argv) {
  ArgParser p("info",
              "Build a CoAtNet and report its parameters (key params), GMACs at the image "
              "size (one image, multiply-accumulates) and the output shape of each stage.");
  add_model_options(p);
  p.flag("json", "print one JSON object on stdout");
  p.epilog("example: coatnet info --model coatnet_0_224 --image-size 384 --json");
  return run_command(p, argc, argv, [&] {
    model::ModelSpec spec = model::spec_from_config(model_config_from(p));
    model::CoAtNet net(spec);
    int64_t params = model::count_parameters(*net);
    double gmacs = static_cast<double>(model::count_macs(net)) / 1e9;
    auto shapes = model::stage_shapes(spec);
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
    return 0;
  });
}

}  // namespace coatnet::cli
