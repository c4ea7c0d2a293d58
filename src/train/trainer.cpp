#include "train/trainer.h"

#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/version.h>

#include <atomic>
#include <chrono>
#include <cmath>
#include <csignal>
#include <cstdlib>
#include <ctime>
#include <filesystem>
#include <limits>
#include <optional>
#include <thread>

#include "checkpoint/checkpointer.h"
#include "config/config.h"
#include "data/dataset.h"
#include "data/loader.h"
#include "data/mixup.h"
#include "dist/comm.h"
#include "dist/grad_buckets.h"
#include "dist/sync_bn.h"
#include "dist/world.h"
#include "model/coatnet.h"
#include "model/weights.h"
#include "train/checkpoint_state.h"
#include "train/ema.h"
#include "train/evaluate.h"
#include "train/flat_params.h"
#include "train/loss.h"
#include "train/optim.h"
#include "train/precision.h"
#include "train/report.h"
#include "train/setup.h"
#include "train/step.h"
#include "util/atomic_file.h"
#include "util/clock.h"
#include "util/keyed_random.h"
#include "util/text.h"

namespace coatnet::train {

namespace fs = std::filesystem;

namespace {

std::string run_directory(const config::Config& cfg, const dist::World& world) {
  std::string name = cfg.get_string("train.name");
  if (name.empty()) {
    // Rank 0's clock names the run for everyone.
    char stamp[32];
    std::time_t now = std::time(nullptr);
    std::strftime(stamp, sizeof stamp, "%Y%m%d-%H%M%S", std::localtime(&now));
    std::string mine = cfg.get_string("model.name") + "-" + stamp;
    name = world.gather_strings(mine).front();
  }
  return (fs::path(cfg.get_string("train.run_dir")) / name).string();
}

// All ranks start from rank 0's weights and buffers (the seed is shared too; this makes it
// true whatever a custom init or --init-from did).
void broadcast_model(torch::nn::Module& net, FlatParams& flat, dist::Comm& comm) {
  at::NoGradGuard no_grad;
  comm.broadcast(flat.values, 0, "initial parameters");
  for (at::Tensor b : net.buffers(true)) {
    at::Tensor c = b.contiguous();
    comm.broadcast(c, 0, "initial buffers");
    if (!c.is_same(b)) b.copy_(c);
  }
}

// timm's --dist-bn reduce: without SyncBN each rank's BatchNorm statistics come from its own
// batches. While this lives they are replaced by their average over the ranks, so that every
// rank evaluates the same model; then each rank's own come back (unless keep()), so the
// training state never depends on when evaluations happened — a resumed run stays exact.
class AveragedBnStats {
 public:
  AveragedBnStats(torch::nn::Module& net, dist::Comm& comm, bool on) {
    if (!on || comm.size() == 1) return;
    at::NoGradGuard no_grad;
    std::vector<at::Tensor> flat;
    for (const at::Tensor& b : net.buffers(/*recurse=*/true))
      if (b.is_floating_point()) {
        stats_.push_back(b);
        saved_.push_back(b.clone());
        flat.push_back(b.reshape({-1}).to(at::kFloat));
      }
    if (stats_.empty()) return;
    at::Tensor all = at::cat(flat);
    comm.allreduce(all, "BatchNorm statistics before evaluation");
    all.div_(comm.size());
    int64_t offset = 0;
    for (auto& t : stats_) {
      t.copy_(all.narrow(0, offset, t.numel()).view(t.sizes()));
      offset += t.numel();
    }
  }
  ~AveragedBnStats() {
    at::NoGradGuard no_grad;
    for (size_t i = 0; i < saved_.size(); ++i) stats_[i].copy_(saved_[i]);
  }
  void keep() { saved_.clear(); }
  AveragedBnStats(const AveragedBnStats&) = delete;
  AveragedBnStats& operator=(const AveragedBnStats&) = delete;

 private:
  std::vector<at::Tensor> stats_, saved_;
};

// final.safetensors (and final_ema.safetensors), in timm's names, by rank 0: the weights with
// BatchNorm statistics averaged over the ranks, as evaluation used them.
void save_final_weights(model::CoAtNetImpl& net, ModelEma* ema, dist::Comm& comm, bool reduce_bn,
                        const std::string& run_dir, bool root) {
  AveragedBnStats(net, comm, reduce_bn).keep();
  if (ema) {
    ema->swap();
    AveragedBnStats(net, comm, reduce_bn).keep();
    ema->swap();
  }
  if (!root) return;
  model::save_weights(net, (fs::path(run_dir) / "final.safetensors").string());
  if (ema) {
    ema->swap();
    model::save_weights(net, (fs::path(run_dir) / "final_ema.safetensors").string());
    ema->swap();
  }
}

// The model on the validation set, and its EMA when there is one, each with BatchNorm
// statistics averaged over the ranks (AveragedBnStats) for the evaluation only.
struct Evaluation {
  EvalResult model;
  std::optional<EvalResult> ema;
};
Evaluation evaluate_run(model::CoAtNetImpl& net, ModelEma* ema, data::Loader& val, dist::Comm& comm,
                        const at::Device& device, bool reduce_bn) {
  Evaluation out;
  {
    AveragedBnStats averaged(net, comm, reduce_bn);
    out.model = evaluate(net, val, comm, device);
  }
  if (ema) {
    ema->swap();
    {
      AveragedBnStats averaged(net, comm, reduce_bn);
      out.ema = evaluate(net, val, comm, device);
    }
    ema->swap();
  }
  return out;
}

std::string eval_line(const EvalResult& r, int64_t step, bool ema) {
  char line[200];
  if (ema)
    std::snprintf(line, sizeof line, "[eval] step %lld (EMA): top-1 %.2f%%  top-5 %.2f%%",
                  static_cast<long long>(step), 100 * r.top1, 100 * r.top5);
  else
    std::snprintf(line, sizeof line,
                  "[eval] step %lld: top-1 %.2f%%  top-5 %.2f%%  loss %.4f  (%lld samples, %.1f s)",
                  static_cast<long long>(step), 100 * r.top1, 100 * r.top5, r.loss,
                  static_cast<long long>(r.samples), r.seconds);
  return line;
}

// A stop request (SIGUSR1/SIGUSR2/SIGTERM: a preemption notice from Slurm's --signal, or mpirun
// forwarding one): the ranks agree on it at the next step boundary, save and exit.
std::atomic<int> stop_signal{0};
extern "C" void on_stop_signal(int sig) {
  stop_signal = sig;
}

class StopSignals {
 public:
  StopSignals() {
    for (int sig : {SIGUSR1, SIGUSR2, SIGTERM}) old_.push_back(std::signal(sig, on_stop_signal));
  }
  ~StopSignals() {
    int i = 0;
    for (int sig : {SIGUSR1, SIGUSR2, SIGTERM}) std::signal(sig, old_[i++]);
  }

 private:
  std::vector<void (*)(int)> old_;
};

// Where `checkpoint.dir` is empty: RUN_DIR/checkpoints.
std::string checkpoint_root(const config::Config& cfg, const std::string& run_dir) {
  const std::string& dir = cfg.get_string("checkpoint.dir");
  return dir.empty() ? (fs::path(run_dir) / "checkpoints").string() : dir;
}

// The recipe keys that differ between the checkpoint's config and this run's, for the log.
std::string recipe_changes(const std::string& saved_config, const config::Config& now) {
  std::map<std::string, std::string> a;
  try {
    a = config::Config::load(saved_config, {}).recipe();
  } catch (const std::exception& e) {
    return std::string("(the checkpoint's config does not load here: ") + e.what() + ")";
  }
  const auto b = now.recipe();
  std::string out;
  for (const auto& [k, v] : b) {
    auto it = a.find(k);
    const std::string was = it == a.end() ? "(unset)" : it->second;
    if (was != v) out += (out.empty() ? "" : ", ") + k + " " + was + " -> " + v;
  }
  return out;
}

// The model of the config on `device`, from model.init_from's weights when it names some.
model::CoAtNet build_model(const config::Config& cfg, const model::ModelSpec& spec,
                           const at::Device& device, util::Progress& progress) {
  model::CoAtNet net(spec);
  if (!cfg.get_string("model.init_from").empty()) {
    model::LoadReport rep = model::load_weights(*net, cfg.get_string("model.init_from"));
    if (!rep.resized.empty())
      progress.message("[init] resized " + std::to_string(rep.resized.size()) +
                       " relative-position bias tables to " + std::to_string(spec.image_size) +
                       " px");
    if (!rep.counters_zeroed.empty())
      progress.message("[init] " + std::to_string(rep.counters_zeroed.size()) +
                       " BatchNorm num_batches_tracked absent from the weights: set to 0");
  }
  net->to(device);
  return net;
}

// Where a resumed run continues; empty for a fresh one.
struct Resumed {
  std::optional<checkpoint::Manifest> manifest;
  std::string from;  // the step directory
  explicit operator bool() const { return manifest.has_value(); }
  int64_t step() const { return manifest ? manifest->step : 0; }
};

// train.resume: loads the checkpoint it names (or, for auto, the newest valid one under `root`)
// into the training state and puts the loader where the run stopped; refuses another global
// batch; reports what changed in the recipe.
Resumed resume_run(checkpoint::Checkpointer& ckpt, const std::string& what, const std::string& root,
                   const config::Config& cfg, const LoopOptions& loop, const TrainState& state,
                   data::Loader& loader, const dist::World& world, util::Progress& progress) {
  Resumed r;
  const auto dir = ckpt.find(what);
  if (!dir) {
    progress.message("[resume] no checkpoint in " + root + " yet: starting from step 0");
    return r;
  }
  r.from = *dir;
  checkpoint::State loaded = state.collect();
  r.manifest = ckpt.load(*dir, loaded);
  const std::string note = state.restore(loaded);
  if (!note.empty()) progress.message("[resume] " + note);
  const checkpoint::Manifest& m = *r.manifest;
  if (m.global_batch != loop.global_batch || m.accum_steps != loop.accum)
    throw std::invalid_argument(
        r.from + " was saved with data.batch_size = " + std::to_string(m.global_batch) +
        " and optim.accum_steps = " + std::to_string(m.accum_steps) + "; this run has " +
        std::to_string(loop.global_batch) + " and " + std::to_string(loop.accum) +
        ": resuming needs the same global batch (the per-rank share may change with the "
        "world size)");
  loader.restore({m.epoch, m.samples_consumed});
  const std::string changes =
      recipe_changes((fs::path(r.from) / checkpoint::kConfigName).string(), cfg);
  progress.message("[resume] " + r.from + ": step " + std::to_string(m.step) + ", epoch " +
                   std::to_string(m.epoch) + " + " + std::to_string(m.samples_consumed) +
                   " samples, saved at world size " + std::to_string(m.world_size) + ", now " +
                   std::to_string(world.size()) +
                   (changes.empty() ? "" : "; recipe changes: " + changes));
  return r;
}

}  // namespace

// COATNET_FAULT_STALL_AT: where in the step the rank stalls — "start" (the default: before
// its forward, so the others wait in the gradient all-reduce) or "boundary" (after the update,
// so the others wait in the step-boundary agreement).
void maybe_stall(int rank, int64_t step, const char* where) {
  const char* r = std::getenv("COATNET_FAULT_STALL_RANK");
  const char* s = std::getenv("COATNET_FAULT_STALL_STEP");
  const char* at = std::getenv("COATNET_FAULT_STALL_AT");
  if (!r || !s || std::atoi(r) != rank || std::atoll(s) != step) return;
  if (std::string(at ? at : "start") != where) return;
  std::fprintf(stderr, "[rank %d] fault injection: stalling at step %lld\n", rank,
               static_cast<long long>(step));
  for (;;) std::this_thread::sleep_for(std::chrono::seconds(1));
}

TrainSummary train(const config::Config& requested, dist::World& world) {
  const auto t_start = clock_type::now();
  const bool root = world.is_root();
  util::Progress progress(root, util::Progress::style(requested.get_string("train.progress")),
                          stdout, "train");

  // --- processes and devices ---
  const int threads = compute_threads(requested, world);
  at::set_num_threads(threads);
  const int workers = decode_threads(requested, threads);
  const at::Device device = choose_device(requested, world);
  // From here on the config with its device-dependent "auto"s resolved: what runs is what the
  // run directory's config and the checkpoints record.
  const config::Config cfg = resolved_for(requested, device);
  world.set_timeout(cfg.get_float("dist.timeout_s"));
  dist::CommOptions comm_opts;
  comm_opts.timeout_s = cfg.get_float("dist.timeout_s");
  comm_opts.device_index = device.is_cuda() ? device.index() : -1;
  auto comm = dist::make_comm(cfg.get_string("dist.backend"), world, comm_opts, device.is_cuda());
  configure_gpu_kernels(cfg, device);
  auto precision = make_precision(cfg.get_string("precision.backend"));
  if (cfg.get_bool("checkpoint.enabled"))
    checkpoint::Checkpointer::check_backend(cfg.get_string("checkpoint.backend"));

  // --- model ---
  const uint64_t seed = static_cast<uint64_t>(cfg.get_int("train.seed"));
  at::manual_seed(seed);
  model::ModelSpec spec = model::spec_from_config(cfg);
  model::CoAtNet net = build_model(cfg, spec, device, progress);
  FlatParams flat(*net);
  broadcast_model(*net, flat, *comm);
  std::optional<dist::SyncBatchNormScope> sync_bn;
  if (cfg.get_bool("dist.sync_bn")) sync_bn.emplace(*comm);
  dist::GradBuckets buckets(flat.params(), flat.grads, flat.offsets(), *comm,
                            static_cast<int64_t>(cfg.get_float("dist.first_bucket_mb") * (1 << 20)),
                            static_cast<int64_t>(cfg.get_float("dist.bucket_mb") * (1 << 20)));

  // --- optimizer, schedule, EMA ---
  AdamW optimizer(flat, adamw_options(cfg));
  std::unique_ptr<ModelEma> ema;
  if (cfg.get_float("train.ema_decay") > 0)
    ema = std::make_unique<ModelEma>(flat, *net, cfg.get_float("train.ema_decay"));

  // --- data ---
  if (cfg.get_strings("data.train").empty())
    throw std::invalid_argument("data.train is empty: list the training shards (coatnet pack)");
  data::Loader train_loader(loader_options(cfg, world, true, workers, spec, device));
  check_dataset(train_loader, spec, cfg, "data.train");
  std::unique_ptr<data::Loader> val_loader;
  if (!cfg.get_strings("data.val").empty()) {
    val_loader =
        std::make_unique<data::Loader>(loader_options(cfg, world, false, workers, spec, device));
    check_dataset(*val_loader, spec, cfg, "data.val");
  }
  const LoopOptions loop =
      loop_options(cfg, spec, train_loader.batches_per_epoch(), train_loader.dataset().size());
  // train.cuda_kernels: batch_prep normalises, mixes and casts a uint8 batch in one kernel.
  const bool fused_batch = use_batch_prep_kernel(cfg, device, train_loader);

  // --- run directory, checkpoints, resume ---
  TrainSummary summary;
  const std::string& resume = cfg.get_string("train.resume");
  if (resume == "auto" && cfg.get_string("train.name").empty() &&
      cfg.get_string("checkpoint.dir").empty())
    throw std::invalid_argument(
        "--resume auto needs a fixed run directory to find the checkpoints in: set train.name "
        "(e.g. --set train.name=$SLURM_JOB_NAME) or checkpoint.dir");
  summary.run_dir = run_directory(cfg, world);
  const std::string config_text = cfg.dump();
  std::unique_ptr<checkpoint::Checkpointer> ckpt;
  const TrainState train_state{*net, flat, optimizer, ema.get(), *precision};
  if (loop.checkpoints || !resume.empty()) {
    const auto co =
        checkpoint_options(cfg, checkpoint_root(cfg, summary.run_dir), spec, loop, config_text);
    ckpt = std::make_unique<checkpoint::Checkpointer>(
        co, world, *comm, [&](const std::string& m) { progress.message(m); });
  }
  const Resumed resumed = resume.empty()
                              ? Resumed{}
                              : resume_run(*ckpt, resume, checkpoint_root(cfg, summary.run_dir),
                                           cfg, loop, train_state, train_loader, world, progress);
  const int64_t start_step = resumed.step();
  if (resumed) {
    summary.steps = start_step;
    summary.best_top1 = resumed.manifest->best_top1;
    summary.best_step = resumed.manifest->best_step;
  }
  const std::string& resumed_from = resumed.from;
  std::unique_ptr<MetricsLog> metrics_file;  // rank 0 only
  if (root) {
    fs::create_directories(summary.run_dir);
    util::write_text_atomically((fs::path(summary.run_dir) / "config.yaml").string(), config_text);
    metrics_file =
        std::make_unique<MetricsLog>((fs::path(summary.run_dir) / "metrics.jsonl").string(),
                                     /*append=*/static_cast<bool>(resumed));
  }
  auto record = [&](const json::Value& v) {
    if (metrics_file) metrics_file->write(v);
  };
  // Where every rank runs: host, local rank, threads and device (rank 0 writes them all).
  const std::vector<std::string> placements =
      world.gather_strings(world.host() + "\t" + std::to_string(world.local_rank()) + "\t" +
                           std::to_string(threads) + "\t" + device.str());
  RunFacts facts;
  facts.world_size = world.size();
  facts.ranks_per_node = world.local_size();
  facts.threads = threads;
  facts.decode_threads = workers;
  facts.placements = placements;
  facts.comm = comm->name();
  facts.model = spec.name;
  facts.parameters = flat.parameter_count();
  facts.train_samples = train_loader.dataset().size();
  facts.val_samples = val_loader ? val_loader->dataset().size() : 0;
  facts.global_batch = loop.global_batch;
  facts.accum_steps = loop.accum;
  facts.steps_per_epoch = loop.steps_per_epoch;
  facts.total_steps = loop.total_steps;
  facts.start_step = start_step;
  facts.resumed_from = resumed_from;
  record(env_record(facts));
  progress.message(
      "[train] " + spec.name + ", " + std::to_string(flat.parameter_count()) + " parameters, " +
      std::to_string(world.size()) + " rank(s) × " + std::to_string(threads) + " thread(s) on " +
      device.str() + ", comm " + comm->name() + ", " + std::to_string(buckets.buckets().size()) +
      " gradient bucket(s); " + std::to_string(loop.total_steps) + " steps of " +
      std::to_string(loop.global_batch * loop.accum) + " images; run directory " + summary.run_dir);

  // --- the loop ---
  net->train();
  StepTimes times;
  SkippedSteps skips(device, resumed ? resumed.manifest->skipped_steps : 0, loop.max_bad_steps);
  at::Tensor grad_norm = at::zeros({}, at::TensorOptions().dtype(at::kFloat).device(device));
  ForwardBackward passes(*net, train_loader, buckets, *precision, loop, device, world.rank(),
                         fused_batch, start_step * loop.accum);
  int64_t epoch = resumed ? resumed.manifest->epoch : 0;
  auto run_eval = [&](int64_t step) {
    if (!val_loader) return;
    const Evaluation e = evaluate_run(*net, ema.get(), *val_loader, *comm, device, loop.reduce_bn);
    record(eval_record(e.model, step, epoch, false));
    progress.message(eval_line(e.model, step, false));
    summary.final_top1 = e.model.top1;
    if (e.model.top1 > summary.best_top1) {
      summary.best_top1 = e.model.top1;
      summary.best_step = step;
    }
    if (e.ema) {
      record(eval_record(*e.ema, step, epoch, true));
      progress.message(eval_line(*e.ema, step, true));
      summary.final_top1_ema = e.ema->top1;
    }
  };
  auto settle_skipped = [&](int64_t done) {
    const int64_t window = skips.settle(*precision);
    if (window > 0 && !precision->skips_steps_normally())
      progress.message("[train] " + std::to_string(window) + " step(s) up to step " +
                       std::to_string(done) + ": non-finite gradients, step skipped");
  };
  auto resume_point = [&](int64_t done) {
    settle_skipped(done);
    checkpoint::ResumePoint p;
    const data::SamplerState st = train_loader.state();
    p.step = done;
    p.epoch = st.epoch;
    p.samples_consumed = st.consumed;
    p.skipped_steps = skips.total();
    p.best_top1 = summary.best_top1;
    p.best_step = summary.best_step;
    return p;
  };
  StopSignals stop_signals;
  stop_signal = 0;
  // Stochastic depth and dropout draw from a generator reseeded every step from (seed, rank,
  // step): a resumed run draws the same masks without saving generator states.
  const uint64_t rank_key = key_of(seed, 0x5eed, static_cast<uint64_t>(world.rank()) + 1);
  ProgressLine shown{start_step, loop.total_steps, epoch, loop.epochs, 0, 0, 0, 0};
  for (int64_t step = start_step; step < loop.total_steps; ++step) {
    const auto t_step = clock_type::now();
    comm->set_step(step);
    world.set_step(step);
    maybe_stall(world.rank(), step);
    at::manual_seed(key_of(rank_key, static_cast<uint64_t>(step)));
    const double lr = lr_at(loop.schedule, step);
    buckets.zero();
    const ForwardBackward::Waits waits = passes.run(step);
    epoch = passes.epoch;
    // Gradients are identical on every rank now, so every rank takes the same decision, and
    // takes it on the device: a non-finite gradient (fp16's check, or the norm) sets
    // found_inf, and the optimizer, the EMA and the loss scale read it there.
    at::Tensor& found_inf = skips.begin_step();
    precision->unscale(flat.grads, found_inf);
    grad_norm = clip_grad_norm(flat.grads, loop.clip, found_inf);
    precision->update(found_inf);
    if (ckpt) ckpt->before_update();  // a save's snapshot must be taken before weights change
    optimizer.step(lr, found_inf);
    if (ema) ema->update(found_inf);
    skips.end_step();
    times.add(seconds_since(t_step), waits.data, waits.comm);

    const int64_t done = step + 1;
    if (loop.log_at(done)) {
      // On the device: nccl reduces CUDA tensors.
      at::Tensor l = at::cat({passes.loss_sum.reshape({1}),
                              at::full({1}, passes.data_hash, passes.loss_sum.options())});
      comm->allreduce(l, "loss for logging");
      settle_skipped(done);
      TrainFigures fig;
      fig.step = done;
      fig.epoch = epoch;
      fig.loss = l[0].item<double>() / world.size() / times.steps;
      fig.lr = lr;
      fig.grad_norm = grad_norm.item<double>();
      fig.data_hash = l[1].item<double>();
      fig.skipped_steps = skips.total();
      fig.precision_state = precision->state();
      fig.images_per_s = times.steps * loop.global_batch * loop.accum / std::max(times.time, 1e-9);
      fig.elapsed_s = seconds_since(t_start);
      record(train_record(fig, times));
      passes.loss_sum.zero_();
      passes.data_hash = 0;
      shown = ProgressLine{done,
                           loop.total_steps,
                           epoch,
                           loop.epochs,
                           fig.loss,
                           lr,
                           fig.images_per_s,
                           (loop.total_steps - done) * times.time / times.steps};
      show_progress(progress, shown, true);
      times.close_window();
    } else {
      shown.step = done;  // the live bar moves every step; figures change at log steps
      shown.epoch = epoch;
      shown.lr = lr;
      show_progress(progress, shown, false);
    }
    if (loop.eval_at(done)) run_eval(done);
    summary.steps = done;
    if (ckpt) ckpt->poll();
    // Every rank sees the same decision: a stop signal on any rank stops all of them here.
    maybe_stall(world.rank(), step, "boundary");
    const bool stop = world.max(stop_signal.load(), "stop-signal agreement") != 0;
    if (loop.save_at(done, stop)) ckpt->save(resume_point(done), train_state.collect());
    if (stop) {
      summary.stopped_by_signal = true;
      progress.message("[train] stop signal: stopping after step " + std::to_string(done) +
                       (loop.checkpoints ? ", checkpoint saved; resume with --resume auto" : ""));
      break;
    }
  }
  if (ckpt) {
    ckpt->finish();
    summary.checkpoint_stall_s = ckpt->stall_s();
  }

  // --- the end ---
  if (!summary.stopped_by_signal)
    save_final_weights(*net, ema.get(), *comm, loop.reduce_bn, summary.run_dir, root);
  comm->barrier("end of training");
  sync_bn.reset();
  summary.wall_s = seconds_since(t_start);
  summary.images_per_s = (summary.steps - start_step) * loop.global_batch * loop.accum /
                         std::max(times.total_time, 1e-9);
  summary.data_wait_share = times.total_data / std::max(times.total_time, 1e-9);
  summary.comm_wait_share = times.total_comm / std::max(times.total_time, 1e-9);
  const json::Value s = summary_record(summary, ema != nullptr, resumed_from);
  record(s);
  if (root)
    util::write_text_atomically((fs::path(summary.run_dir) / "summary.json").string(),
                                s.dump(2) + "\n");
  return summary;
}

}  // namespace coatnet::train
