// coatnet eval: top-1/top-5 of a model on the config's validation shards, data-parallel under
// mpirun (each sample counted exactly once, whatever the world size).
#include <ATen/ATen.h>
#include <ATen/Parallel.h>

#include <cstdio>

#include "cli/args.h"
#include "cli/commands.h"
#include "config/config.h"
#include "dist/comm.h"
#include "dist/world.h"
#include "model/coatnet.h"
#include "model/weights.h"
#include "train/evaluate.h"
#include "train/setup.h"
#include "util/json.h"

namespace coatnet::cli {

int cmd_eval(int argc, char** argv) {
  ArgParser p("eval",
              "Evaluate a model on the validation shards of a config (data.val): top-1, top-5 "
              "and loss over every sample exactly once, under mpirun or as one process.");
  p.option("config", "FILE", "YAML recipe whose model.* and data.* keys are used")
      .repeated("set", "KEY=VALUE", "override a config key, e.g. data.val=[val-*.h5]")
      .option("weights", "W.safetensors",
              "weights with timm names (e.g. RUN_DIR/final.safetensors); without it the "
              "seed's initial weights are evaluated")
      .flag("json", "print one JSON object on stdout");
  return run_command(p, argc, argv, [&] {
    config::Config cfg = config::Config::load(p.get("config"), p.all("set"));
    model::ModelSpec spec = model::spec_from_config(cfg);
    if (cfg.get_strings("data.val").empty())
      throw UsageError(
          "data.val is empty: give the validation shards in the config or with "
          "--set data.val=[FILES]");
    dist::World& world = dist::World::init(argc, argv);
    return run_on_every_rank(world, "eval", [&] {
      const int threads = train::compute_threads(cfg, world);
      at::set_num_threads(threads);
      const at::Device device = train::choose_device(cfg, world);
      dist::CommOptions co;
      co.timeout_s = cfg.get_float("dist.timeout_s");
      world.set_timeout(co.timeout_s);
      auto comm = dist::make_comm(cfg.get_string("dist.backend"), world, co, device.is_cuda());
      at::manual_seed(static_cast<uint64_t>(cfg.get_int("train.seed")));
      model::CoAtNet net(spec);
      if (p.has("weights")) model::load_weights(*net, p.get("weights"));
      net->to(device);
      data::Loader val(train::loader_options(cfg, world, false, train::decode_threads(cfg, threads),
                                             spec, device));
      train::check_dataset(val, spec, cfg, "data.val");
      train::EvalResult r = train::evaluate(*net, val, *comm, device);
      if (world.is_root()) {
        if (p.has("json")) {
          json::Value o = json::Value::object();
          o["samples"] = r.samples;
          o["dataset_records"] = val.dataset().size();
          o["corrupt"] = r.corrupt;
          o["world_size"] = world.size();
          o["top1"] = r.top1;
          o["top5"] = r.top5;
          o["loss"] = r.loss;
          o["seconds"] = r.seconds;
          std::puts(o.dump().c_str());
        } else {
          std::printf(
              "top-1 %.2f%%  top-5 %.2f%%  loss %.4f  (%lld samples on %d rank(s), %.1f s)\n",
              100 * r.top1, 100 * r.top5, r.loss, static_cast<long long>(r.samples), world.size(),
              r.seconds);
        }
      }
      return 0;
    });
  });
}

}  // namespace coatnet::cli
