// coatnet train: the main job. Resolves the config (defaults <- YAML file <- --set overrides)
// and runs the data-parallel training loop (src/train/trainer.h) on every rank.
#include <cstdio>
#include <stdexcept>
#include <string>

#include "cli/args.h"
#include "cli/commands.h"
#include "config/config.h"
#include "dist/world.h"
#include "model/variants.h"
#include "train/out_of_memory.h"
#include "train/report.h"
#include "train/trainer.h"
#include "util/progress.h"

namespace coatnet::cli {

namespace {

void print_summary(const train::TrainSummary& s) {
  std::printf("\n[summary] %lld steps in %s, %.0f images/s on average\n",
              static_cast<long long>(s.steps), util::format_duration(s.wall_s).c_str(),
              s.images_per_s);
  if (s.best_top1 >= 0)
    std::printf(
        "[summary] top-1: best %.2f%% (step %lld), final %.2f%%%s\n", 100 * s.best_top1,
        static_cast<long long>(s.best_step), 100 * s.final_top1,
        s.final_top1_ema >= 0
            ? (", EMA final " + std::to_string(100 * s.final_top1_ema).substr(0, 5) + "%").c_str()
            : "");
  std::printf("[summary] step time: %.1f%% waiting for data, %.1f%% waiting for communication\n",
              100 * s.data_wait_share, 100 * s.comm_wait_share);
  if (s.peak_memory_gib >= 0) {
    if (s.device_memory_gib > 0)
      std::printf(
          "[summary] peak memory: %.1f GiB allocated by tensors on the GPU (the largest "
          "rank), of %.1f GiB\n",
          s.peak_memory_gib, s.device_memory_gib);
    else
      std::printf("[summary] peak memory: %.1f GiB resident (the largest rank)\n",
                  s.peak_memory_gib);
  }
  if (s.checkpoint_stall_s > 0)
    std::printf("[summary] checkpoint saves kept training waiting %.2f s in all\n",
                s.checkpoint_stall_s);
  if (s.stopped_by_signal)
    std::printf(
        "[summary] stopped by a signal after step %lld with a checkpoint: continue with "
        "--resume auto (exit code %d)\n",
        static_cast<long long>(s.steps), kExitStopped);
  std::printf(
      "[summary] run directory: %s (metrics.jsonl, config.yaml, %scheckpoints/; "
      "curves: coatnet plot %s)\n",
      s.run_dir.c_str(), s.stopped_by_signal ? "" : "final.safetensors, ", s.run_dir.c_str());
}

}  // namespace

int cmd_train(int argc, char** argv) {
  ArgParser p("train",
              "Train CoAtNet data-parallel: one rank per GPU (or CPU share) under mpirun/srun, "
              "or as a single process. The config is the schema defaults, then --config, then "
              "each --set in order.");
  p.option("config", "FILE", "YAML recipe, e.g. configs/coatnet_0_imagenet1k.yaml")
      .repeated("set", "KEY=VALUE", "override a config key, e.g. optim.lr=5e-4")
      .option("resume", "auto|PATH",
              "continue from a checkpoint: auto = the run's newest valid one (or start fresh), "
              "or a step-… / checkpoint directory (sets train.resume)")
      .option("init-from", "FILE",
              "start from safetensors weights (timm names; bias tables resized to the image "
              "size), e.g. to fine-tune (sets model.init_from)")
      .flag("print-config", "print the resolved config (every key, with its doc) and exit");
  return run_command(p, argc, argv, [&] {
    std::vector<std::string> sets = p.all("set");
    if (p.has("resume")) sets.push_back("train.resume=" + p.get("resume"));
    if (p.has("init-from")) sets.push_back("model.init_from=" + p.get("init-from"));
    config::Config cfg = config::Config::load(p.get("config"), sets);
    model::spec_from_config(cfg);  // the model section must describe a buildable model
    if (p.has("print-config")) {
      std::fputs(cfg.dump().c_str(), stdout);
      return 0;
    }
    dist::World& world = dist::World::init(argc, argv);
    return run_on_every_rank(world, "train", [&] {
      train::TrainSummary s;
      try {
        s = train::train(cfg, world);
      } catch (const std::exception& e) {
        const std::string oom = train::out_of_memory_message(
            e, cfg, p.has("config") ? p.get("config") : "", world.size());
        if (oom.empty()) throw;
        throw std::runtime_error(oom);
      }
      if (world.is_root()) print_summary(s);
      // EX_TEMPFAIL: stopped by a signal after saving; the Slurm scripts requeue on it.
      return s.stopped_by_signal ? kExitStopped : 0;
    });
  });
}

int run_on_every_rank(dist::World& world, const char* command, const std::function<int()>& body) {
  try {
    return body();
  } catch (const std::exception& e) {
    // The other ranks may be waiting in a collective for this one: end the whole job now
    // rather than at dist.timeout_s.
    std::fprintf(stderr, "[rank %d] coatnet %s: error: %s\n", world.rank(), command, e.what());
    if (world.size() > 1) world.abort(1);
    return 1;
  }
}

}  // namespace coatnet::cli
