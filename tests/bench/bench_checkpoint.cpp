// Save and load throughput of a checkpoint plugin for a model's whole training state (fp32
// parameters, AdamW moments, EMA: ~400 MB for coatnet_0_224), and what an asynchronous save
// costs the training steps that run while it is written. Run it under mpirun for W ranks;
// checkpoint_throughput.sh compares it with dd on the same disk.
//   mpirun -np 2 bench_checkpoint --model coatnet_0_224 --dir /tmp/ck --json
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>

#include "checkpoint/checkpointer.h"
#include "checkpoint/manifest.h"
#include "checkpoint/store.h"
#include "cli/args.h"
#include "dist/comm.h"
#include "dist/world.h"
#include "model/coatnet.h"
#include "train/checkpoint_state.h"
#include "train/ema.h"
#include "train/flat_params.h"
#include "train/optim.h"
#include "train/precision.h"
#include "util/json.h"

using namespace coatnet;
using clock_type = std::chrono::steady_clock;

namespace {

double since(clock_type::time_point t) {
  return std::chrono::duration<double>(clock_type::now() - t).count();
}

// Reading back what was just written would measure the page cache, not the disk.
bool drop_page_cache() {
  ::sync();
  std::ofstream f("/proc/sys/vm/drop_caches");
  f << "3\n";
  f.flush();
  return static_cast<bool>(f);
}

}  // namespace

int main(int argc, char** argv) {
  cli::ArgParser p("bench_checkpoint",
                   "Time a synchronous save, a load (after dropping the page cache when allowed) "
                   "and the training-step cost of an asynchronous save.");
  p.option("model", "NAME", "variant", "coatnet_0_224")
      .option("dir", "DIR", "checkpoint directory (emptied first)", "/tmp/coatnet_ckpt_bench")
      .option("backend", "NAME", "checkpoint plugin", "sharded")
      .option("batch", "B", "images per training step (per rank)", "4")
      .option("steps", "N", "training steps timed without and with a save in flight", "3")
      .option("repeat", "N", "saves and loads timed (the median is reported)", "3")
      .flag("json", "print one JSON object on stdout (rank 0)");
  return cli::run_command(p, argc, argv, [&] {
    dist::World& world = dist::World::init(argc, argv);
    at::set_num_threads(world.threads_per_rank());
    const std::string dir = p.get("dir");
    if (world.is_root()) std::filesystem::remove_all(dir);
    world.barrier();
    auto comm = dist::make_comm("mpi", world, {}, false);
    auto precision = train::make_precision("fp32");
    model::CoAtNet net(model::variant(p.get("model")));
    train::FlatParams flat(*net);
    train::AdamW optimizer(flat, {});
    optimizer.exp_avg.normal_();  // realistic, incompressible optimizer state
    optimizer.exp_avg_sq.uniform_();
    train::ModelEma ema(flat, *net, 0.9999);
    checkpoint::CheckpointOptions co;
    co.root = dir;
    co.backend = p.get("backend");
    co.async = false;
    co.keep_last = 100;
    co.config_text = "model:\n  name: " + p.get("model") + "\n";
    co.model = p.get("model");
    co.global_batch = 1;
    const train::TrainState train_state{*net, flat, optimizer, &ema, *precision};
    checkpoint::State state = train_state.collect();
    auto quiet = [](const std::string&) {};
    checkpoint::Checkpointer ckpt(co, world, *comm, quiet);

    // Synchronous saves (snapshot, write + fsync + hash on every rank, commit) and loads at the
    // same world size (verify checksums, read this rank's part, all-gather); this VM's disk is
    // noisy, so each is timed a few times and the median kept.
    std::vector<double> saves, loads;
    int64_t bytes = 0;
    bool dropped = true;
    clock_type::time_point t0;
    const int repeat = p.get_int("repeat");
    for (int r = 1; r <= repeat; ++r) {
      ::sync();
      world.barrier();
      t0 = clock_type::now();
      ckpt.save({r}, state);
      world.barrier();
      saves.push_back(since(t0));
    }
    for (const auto& s : checkpoint::read_manifest(dir + "/" + checkpoint::step_dir_name(1)).shards)
      bytes += s.bytes;
    for (int r = 1; r <= repeat; ++r) {
      dropped = drop_page_cache() && dropped;
      world.barrier();
      t0 = clock_type::now();
      ckpt.load(*ckpt.find(dir + "/" + checkpoint::step_dir_name(r)), state);
      world.barrier();
      loads.push_back(since(t0));
    }
    std::sort(saves.begin(), saves.end());
    std::sort(loads.begin(), loads.end());
    const double save_s = saves[saves.size() / 2], load_s = loads[loads.size() / 2];

    // Training steps alone, then with an asynchronous save in flight.
    const int batch = p.get_int("batch"), steps = p.get_int("steps");
    const model::ModelSpec spec = net->spec;
    at::Tensor x = at::randn({batch, spec.in_chans, spec.image_size, spec.image_size});
    at::Tensor y = at::randint(spec.num_classes, {batch}, at::kLong);
    net->train();
    checkpoint::Checkpointer* in_flight = nullptr;
    auto step = [&] {
      flat.grads.zero_();
      at::cross_entropy_loss(net->forward(x), y).backward();
      if (in_flight) in_flight->before_update();
      optimizer.step(1e-4, at::zeros({}));
    };
    step();  // warm-up
    t0 = clock_type::now();
    for (int i = 0; i < steps; ++i) step();
    const double step_s = since(t0) / steps;
    checkpoint::CheckpointOptions ao = co;
    ao.async = true;
    checkpoint::Checkpointer async_ckpt(ao, world, *comm, quiet);
    in_flight = &async_ckpt;
    world.barrier();  // the ranks' steps above are not in lockstep (no gradient all-reduce)
    t0 = clock_type::now();
    async_ckpt.save({1000}, state);
    int during = 0;
    double during_s = 0;
    while (async_ckpt.pending() || during < steps) {
      auto ts = clock_type::now();
      step();
      during_s += since(ts);
      ++during;
      async_ckpt.poll();
    }
    const double async_total_s = since(t0);
    const double stall_s = async_ckpt.stall_s();  // in save() and waiting before the update

    if (world.is_root()) {
      const double mb = bytes / 1e6;
      json::Value o = json::Value::object();
      o["model"] = p.get("model");
      o["backend"] = p.get("backend");
      o["world_size"] = world.size();
      o["state_mb"] = mb;
      o["save_s"] = save_s;
      o["save_mb_per_s"] = mb / save_s;
      o["load_s"] = load_s;
      o["load_mb_per_s"] = mb / load_s;
      o["load_from_disk"] = dropped;  // false: the page cache could not be dropped
      o["step_s"] = step_s;
      o["async_stall_s"] = stall_s;
      o["async_stall_share_of_step"] = stall_s / step_s;
      o["steps_during_async_write"] = during;
      o["step_s_during_async_write"] = during_s / during;
      o["async_total_s"] = async_total_s;
      if (p.has("json"))
        std::puts(o.dump().c_str());
      else
        std::printf(
            "%s, %s, W=%d: %.0f MB; save %.2f s (%.0f MB/s), load %.2f s (%.0f MB/s%s); "
            "async save stalls a step by %.3f s (%.1f%% of %.2f s), steps while writing "
            "%.2f s\n",
            p.get("model").c_str(), p.get("backend").c_str(), world.size(), mb, save_s, mb / save_s,
            load_s, mb / load_s, dropped ? "" : ", page cache", stall_s, 100 * stall_s / step_s,
            step_s, during_s / during);
    }
    return 0;
  });
}
