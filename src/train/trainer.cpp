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
#include <fstream>
#include <limits>
#include <optional>
#include <sstream>
#include <thread>

#include "checkpoint/checkpointer.h"
#include "config/config.h"
#include "cuda/batch_prep.h"
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

json::Value eval_record(const EvalResult& r, int64_t step, int64_t epoch, bool ema) {
  json::Value rec = json::Value::object();
  rec["type"] = "eval";
  rec["step"] = step;
  rec["epoch"] = epoch;
  rec["ema"] = ema;
  rec["val_top1"] = r.top1;
  rec["val_top5"] = r.top5;
  rec["val_loss"] = r.loss;
  rec["samples"] = r.samples;
  rec["corrupt"] = r.corrupt;
  rec["seconds"] = r.seconds;
  return rec;
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

// A 32-bit hash of each training sample index, summed over a log window and over ranks: equal
// windows of the data stream give equal sums at any world size (the resume tests compare it).
double sample_hash(const std::vector<int64_t>& indices) {
  double h = 0;
  for (int64_t i : indices)
    if (i >= 0) h += static_cast<double>(mix64(static_cast<uint64_t>(i)) >> 32);
  return h;
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

// Fault injection for the tests: COATNET_FAULT_NAN_STEPS=A-B makes the loss of steps A..B
// (inclusive) NaN on every rank, so their gradients are not finite.
bool nan_fault(int64_t step) {
  const char* v = std::getenv("COATNET_FAULT_NAN_STEPS");
  if (!v) return false;
  long long a = 0, b = -1;
  if (std::sscanf(v, "%lld-%lld", &a, &b) != 2) return false;
  return step >= a && step <= b;
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
  model::CoAtNet net(spec);
  if (!cfg.get_string("model.init_from").empty()) {
    model::LoadReport rep = model::load_weights(*net, cfg.get_string("model.init_from"));
    if (root && !rep.resized.empty())
      progress.message("[init] resized " + std::to_string(rep.resized.size()) +
                       " relative-position bias tables to " + std::to_string(spec.image_size) +
                       " px");
    if (root && !rep.counters_zeroed.empty())
      progress.message("[init] " + std::to_string(rep.counters_zeroed.size()) +
                       " BatchNorm num_batches_tracked absent from the weights: set to 0");
  }
  net->to(device);
  FlatParams flat(*net);
  broadcast_model(*net, flat, *comm);
  std::optional<dist::SyncBatchNormScope> sync_bn;
  if (cfg.get_bool("dist.sync_bn")) sync_bn.emplace(*comm);
  dist::GradBuckets buckets(flat.params(), flat.grads, flat.offsets(), *comm,
                            static_cast<int64_t>(cfg.get_float("dist.first_bucket_mb") * (1 << 20)),
                            static_cast<int64_t>(cfg.get_float("dist.bucket_mb") * (1 << 20)));

  // --- optimizer, schedule, EMA ---
  AdamWOptions aw;
  aw.beta1 = cfg.get_floats("optim.betas").at(0);
  aw.beta2 = cfg.get_floats("optim.betas").at(1);
  aw.eps = cfg.get_float("optim.eps");
  aw.weight_decay = cfg.get_float("optim.weight_decay");
  AdamW optimizer(flat, aw);
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
  const int64_t accum = cfg.get_int("optim.accum_steps");
  const int64_t global_batch = cfg.get_int("data.batch_size");
  const int64_t steps_per_epoch = train_loader.batches_per_epoch() / accum;
  if (steps_per_epoch == 0)
    throw std::invalid_argument(
        "data.train has " + std::to_string(train_loader.dataset().size()) +
        " samples: fewer than one optimizer step of data.batch_size × optim.accum_steps = " +
        std::to_string(global_batch * accum));
  const int64_t epochs = cfg.get_int("schedule.epochs");
  int64_t total_steps = epochs * steps_per_epoch;
  if (cfg.get_int("train.max_steps") > 0)
    total_steps = std::min(total_steps, cfg.get_int("train.max_steps"));
  ScheduleOptions sched;
  sched.type = cfg.get_string("schedule.type");
  sched.lr = cfg.get_float("optim.lr");
  sched.min_lr = cfg.get_float("schedule.min_lr");
  sched.warmup_steps = cfg.get_int("schedule.warmup_steps");
  sched.total_steps = epochs * steps_per_epoch;

  const LossType loss_type =
      cfg.get_string("loss.type") == "sigmoid_bce" ? LossType::SigmoidBCE : LossType::SoftmaxCE;
  data::MixOptions mix;
  mix.mixup_alpha = cfg.get_float("aug.mixup");
  mix.cutmix_alpha = cfg.get_float("aug.cutmix");
  mix.label_smoothing = cfg.get_float("loss.label_smoothing");
  mix.num_classes = spec.num_classes;
  mix.seed = seed;
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
  const bool checkpoints = cfg.get_bool("checkpoint.enabled");
  if (checkpoints || !resume.empty()) {
    checkpoint::CheckpointOptions co;
    co.root = checkpoint_root(cfg, summary.run_dir);
    co.backend = cfg.get_string("checkpoint.backend");
    co.async = cfg.get_bool("checkpoint.async");
    co.keep_last = cfg.get_int("checkpoint.keep_last");
    co.keep_every = cfg.get_int("checkpoint.keep_every");
    co.stop_on_error = cfg.get_string("checkpoint.on_error") == "stop";
    co.config_text = config_text;
    co.config_hash = checkpoint::recipe_hash(cfg.recipe());
    co.model = spec.name;
    co.seed = seed;
    co.global_batch = global_batch;
    co.accum_steps = accum;
    ckpt = std::make_unique<checkpoint::Checkpointer>(
        co, world, *comm, [&](const std::string& m) { progress.message(m); });
  }
  int64_t start_step = 0;  // > 0 when resumed
  std::optional<checkpoint::Manifest> resumed;
  std::string resumed_from;
  if (!resume.empty()) {
    if (auto dir = ckpt->find(resume)) {
      resumed_from = *dir;
      checkpoint::State state = train_state.collect();
      resumed = ckpt->load(*dir, state);
      const std::string note = train_state.restore(state);
      if (!note.empty()) progress.message("[resume] " + note);
    } else {
      progress.message("[resume] no checkpoint in " + checkpoint_root(cfg, summary.run_dir) +
                       " yet: starting from step 0");
    }
  }
  if (resumed) {
    const checkpoint::Manifest& m = *resumed;
    if (m.global_batch != global_batch || m.accum_steps != accum)
      throw std::invalid_argument(
          resumed_from + " was saved with data.batch_size = " + std::to_string(m.global_batch) +
          " and optim.accum_steps = " + std::to_string(m.accum_steps) + "; this run has " +
          std::to_string(global_batch) + " and " + std::to_string(accum) +
          ": resuming needs the same global batch (the per-rank share may change with the "
          "world size)");
    start_step = m.step;
    summary.steps = m.step;
    train_loader.restore({m.epoch, m.samples_consumed});
    summary.best_top1 = m.best_top1;
    summary.best_step = m.best_step;
    const std::string changes =
        recipe_changes((fs::path(resumed_from) / checkpoint::kConfigName).string(), cfg);
    progress.message("[resume] " + resumed_from + ": step " + std::to_string(m.step) + ", epoch " +
                     std::to_string(m.epoch) + " + " + std::to_string(m.samples_consumed) +
                     " samples, saved at world size " + std::to_string(m.world_size) + ", now " +
                     std::to_string(world.size()) +
                     (changes.empty() ? "" : "; recipe changes: " + changes));
  }
  std::unique_ptr<MetricsLog> metrics_file;  // rank 0 only
  if (root) {
    fs::create_directories(summary.run_dir);
    util::write_text_atomically((fs::path(summary.run_dir) / "config.yaml").string(), config_text);
    metrics_file = std::make_unique<MetricsLog>(
        (fs::path(summary.run_dir) / "metrics.jsonl").string(), /*append=*/resumed.has_value());
  }
  auto record = [&](const json::Value& v) {
    if (metrics_file) metrics_file->write(v);
  };
  // Where every rank runs: host, local rank, threads and device (rank 0 writes them all).
  const std::vector<std::string> placements =
      world.gather_strings(world.host() + "\t" + std::to_string(world.local_rank()) + "\t" +
                           std::to_string(threads) + "\t" + device.str());
  {
    json::Value env = json::Value::object();
    env["type"] = "env";
    env["torch"] = TORCH_VERSION;
    env["world_size"] = world.size();
    env["ranks_per_node"] = world.local_size();
    json::Value ranks = json::Value::array();
    for (size_t r = 0; r < placements.size(); ++r) {
      const std::vector<std::string> f = text::split(placements[r], '\t');
      json::Value p = json::Value::object();
      p["rank"] = static_cast<int64_t>(r);
      p["host"] = f.at(0);
      p["local_rank"] = static_cast<int64_t>(std::stoll(f.at(1)));
      p["threads"] = static_cast<int64_t>(std::stoll(f.at(2)));
      p["device"] = f.at(3);
      ranks.push_back(p);
    }
    env["ranks"] = ranks;
    env["comm"] = comm->name();
    env["threads_per_rank"] = threads;
    env["decode_threads_per_rank"] = workers;
    env["model"] = spec.name;
    env["parameters"] = flat.parameter_count();
    env["train_samples"] = train_loader.dataset().size();
    env["val_samples"] = val_loader ? val_loader->dataset().size() : 0;
    env["global_batch"] = global_batch;
    env["accum_steps"] = accum;
    env["steps_per_epoch"] = steps_per_epoch;
    env["total_steps"] = total_steps;
    env["start_step"] = start_step;
    if (resumed) env["resumed_from"] = resumed_from;
    record(env);
  }
  progress.message(
      "[train] " + spec.name + ", " + std::to_string(flat.parameter_count()) + " parameters, " +
      std::to_string(world.size()) + " rank(s) × " + std::to_string(threads) + " thread(s) on " +
      device.str() + ", comm " + comm->name() + ", " + std::to_string(buckets.buckets().size()) +
      " gradient bucket(s); " + std::to_string(total_steps) + " steps of " +
      std::to_string(global_batch * accum) + " images; run directory " + summary.run_dir);

  // --- the loop ---
  net->train();
  double window_data = 0, window_comm = 0, window_time = 0;
  double total_data = 0, total_comm = 0, total_time = 0;
  int64_t window_steps = 0;
  at::Tensor loss_sum = at::zeros({}, at::TensorOptions().dtype(at::kDouble).device(device));
  int64_t skipped_steps = resumed ? resumed->skipped_steps : 0;
  // Skipped steps are counted on the device and read back only at log steps and saves
  // (settle_skipped below), so a step never waits for the host.
  const auto on_device = at::TensorOptions().dtype(at::kFloat).device(device);
  at::Tensor found_inf = at::zeros({}, on_device), grad_norm = at::zeros({}, on_device);
  at::Tensor skipped = at::zeros({}, on_device);   // since the last read
  at::Tensor bad_run = at::zeros({}, on_device);   // non-finite steps in a row, now
  at::Tensor bad_most = at::zeros({}, on_device);  // the longest such run since the last read
  int64_t epoch = resumed ? resumed->epoch : 0;
  double data_hash = 0;
  const bool reduce_bn = !cfg.get_bool("dist.sync_bn");  // SyncBN keeps them equal already
  auto run_eval = [&](int64_t step) {
    if (!val_loader) return;
    EvalResult r;
    {
      AveragedBnStats averaged(*net, *comm, reduce_bn);
      r = evaluate(*net, *val_loader, *comm, device);
    }
    record(eval_record(r, step, epoch, false));
    char line[200];
    std::snprintf(line, sizeof line,
                  "[eval] step %lld: top-1 %.2f%%  top-5 %.2f%%  loss %.4f  (%lld samples, %.1f s)",
                  static_cast<long long>(step), 100 * r.top1, 100 * r.top5, r.loss,
                  static_cast<long long>(r.samples), r.seconds);
    progress.message(line);
    summary.final_top1 = r.top1;
    if (r.top1 > summary.best_top1) {
      summary.best_top1 = r.top1;
      summary.best_step = step;
    }
    if (ema) {
      ema->swap();
      EvalResult e;
      {
        AveragedBnStats averaged(*net, *comm, reduce_bn);
        e = evaluate(*net, *val_loader, *comm, device);
      }
      ema->swap();
      record(eval_record(e, step, epoch, true));
      std::snprintf(line, sizeof line, "[eval] step %lld (EMA): top-1 %.2f%%  top-5 %.2f%%",
                    static_cast<long long>(step), 100 * e.top1, 100 * e.top5);
      progress.message(line);
      summary.final_top1_ema = e.top1;
    }
  };

  const int64_t log_every = cfg.get_int("train.log_every_steps");
  const int64_t eval_every = cfg.get_int("train.eval_every_steps");
  const double max_bad = static_cast<double>(cfg.get_int("precision.max_bad_steps"));
  const int64_t ckpt_every = cfg.get_int("checkpoint.every_steps");
  const double clip = cfg.get_float("optim.clip_grad");
  auto settle_skipped = [&](int64_t done) {
    const at::Tensor counts = at::stack({skipped, bad_most}).cpu();  // one host read
    const auto window = static_cast<int64_t>(counts[0].item<float>());
    const auto most = static_cast<int64_t>(counts[1].item<float>());
    skipped.zero_();
    bad_most.copy_(bad_run);
    skipped_steps += window;
    if (most >= max_bad)
      throw std::runtime_error(
          "the gradients were not finite for " + std::to_string(most) +
          " steps in a row (precision.max_bad_steps, precision " + precision->name() +
          "); the run diverged — lower optim.lr, raise schedule.warmup_steps, or try bf16");
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
    p.skipped_steps = skipped_steps;
    p.best_top1 = summary.best_top1;
    p.best_step = summary.best_step;
    return p;
  };
  StopSignals stop_signals;
  stop_signal = 0;
  // Stochastic depth and dropout draw from a generator reseeded every step from (seed, rank,
  // step): a resumed run draws the same masks without saving generator states.
  const uint64_t rank_key = key_of(seed, 0x5eed, static_cast<uint64_t>(world.rank()) + 1);
  int64_t micro_index = start_step * accum;
  ProgressLine shown{start_step, total_steps, epoch, epochs, 0, 0, 0, 0};
  for (int64_t step = start_step; step < total_steps; ++step) {
    const auto t_step = clock_type::now();
    comm->set_step(step);
    world.set_step(step);
    maybe_stall(world.rank(), step);
    at::manual_seed(key_of(rank_key, static_cast<uint64_t>(step)));
    const double lr = lr_at(sched, step);
    buckets.zero();
    double data_wait = 0, comm_wait = 0;
    for (int64_t micro = 0; micro < accum; ++micro, ++micro_index) {
      data::Batch batch = train_loader.next();
      epoch = batch.epoch;
      data_wait += batch.wait_seconds;
      data_hash += sample_hash(batch.indices);
      const data::MixInfo m = data::draw_mix(mix, batch.epoch, micro_index, world.rank(),
                                             batch.images.size(2), batch.images.size(3));
      at::Tensor images;
      if (fused_batch) {
        const data::Loader::Normalisation n = train_loader.normalisation_on(device);
        images = cuda::prepare_batch(batch.images.to(device, /*non_blocking=*/true), n.scale,
                                     n.bias, m, precision->compute_dtype());
      } else {
        images = train_loader.images_on(batch, device);
        data::mix_images(images, m);
      }
      at::Tensor soft = data::mix_targets(
          data::soft_targets(batch.targets.to(device), spec.num_classes, mix.label_smoothing), m);
      at::Tensor loss;
      {
        auto autocast = precision->autocast(device);
        loss = classification_loss(net->forward(images), soft, batch.valid.to(device), loss_type);
      }
      if (nan_fault(step)) loss = loss * std::numeric_limits<double>::quiet_NaN();
      buckets.begin_backward(/*sync=*/micro == accum - 1);
      precision->scale_loss(loss / static_cast<double>(accum)).backward();
      buckets.finish();
      comm_wait += buckets.last_wait_s();
      loss_sum += loss.detach().to(at::kDouble) / static_cast<double>(accum);
    }
    // Gradients are identical on every rank now, so every rank takes the same decision, and
    // takes it on the device: a non-finite gradient (fp16's check, or the norm) sets
    // found_inf, and the optimizer, the EMA and the loss scale read it there.
    found_inf.zero_();
    precision->unscale(flat.grads, found_inf);
    grad_norm = clip_grad_norm(flat.grads, clip, found_inf);
    precision->update(found_inf);
    if (ckpt) ckpt->before_update();  // a save's snapshot must be taken before weights change
    optimizer.step(lr, found_inf);
    if (ema) ema->update(found_inf);
    skipped.add_(found_inf);
    bad_run.add_(found_inf).mul_(found_inf);
    at::maximum_out(bad_most, bad_most, bad_run);
    const double dt = seconds_since(t_step);
    window_time += dt;
    window_data += data_wait;
    window_comm += comm_wait;
    ++window_steps;

    const int64_t done = step + 1;
    const bool log_step = done % log_every == 0 || done == total_steps;
    if (log_step) {
      // On the device: nccl reduces CUDA tensors.
      at::Tensor l = at::cat({loss_sum.reshape({1}), at::full({1}, data_hash, loss_sum.options())});
      comm->allreduce(l, "loss for logging");
      settle_skipped(done);
      const double mean_loss = l[0].item<double>() / world.size() / window_steps;
      loss_sum.zero_();
      const double ips = window_steps * global_batch * accum / std::max(window_time, 1e-9);
      json::Value rec = json::Value::object();
      rec["type"] = "train";
      rec["step"] = done;
      rec["epoch"] = epoch;
      rec["loss"] = mean_loss;
      rec["lr"] = lr;
      rec["grad_norm"] = grad_norm.item<double>();
      rec["data_hash"] = l[1].item<double>();
      data_hash = 0;
      rec["skipped_steps"] = skipped_steps;
      for (const auto& [k, v] : precision->state()) rec["precision_" + k] = v;
      rec["images_per_s"] = ips;
      rec["step_s"] = window_time / window_steps;
      rec["data_wait_s"] = window_data / window_steps;
      rec["comm_wait_s"] = window_comm / window_steps;
      rec["elapsed_s"] = seconds_since(t_start);
      record(rec);
      shown = ProgressLine{
          done,      total_steps, epoch, epochs,
          mean_loss, lr,          ips,   (total_steps - done) * window_time / window_steps};
      show_progress(progress, shown, true);
      total_time += window_time;
      total_data += window_data;
      total_comm += window_comm;
      window_time = window_data = window_comm = 0;
      window_steps = 0;
    } else {
      shown.step = done;  // the live bar moves every step; figures change at log steps
      shown.epoch = epoch;
      shown.lr = lr;
      show_progress(progress, shown, false);
    }
    if (done % steps_per_epoch == 0 || (eval_every > 0 && done % eval_every == 0) ||
        done == total_steps)
      run_eval(done);
    summary.steps = done;
    if (ckpt) ckpt->poll();
    // Every rank sees the same decision: a stop signal on any rank stops all of them here.
    maybe_stall(world.rank(), step, "boundary");
    const bool stop = world.max(stop_signal.load(), "stop-signal agreement") != 0;
    if (checkpoints && (stop || done % steps_per_epoch == 0 ||
                        (ckpt_every > 0 && done % ckpt_every == 0) || done == total_steps)) {
      ckpt->save(resume_point(done), train_state.collect());
    }
    if (stop) {
      summary.stopped_by_signal = true;
      progress.message("[train] stop signal: stopping after step " + std::to_string(done) +
                       (checkpoints ? ", checkpoint saved; resume with --resume auto" : ""));
      break;
    }
  }
  if (ckpt) {
    ckpt->finish();
    summary.checkpoint_stall_s = ckpt->stall_s();
  }

  // --- the end ---
  if (!summary.stopped_by_signal) {  // the final weights carry the averaged statistics
    AveragedBnStats(*net, *comm, reduce_bn).keep();
    if (ema) {
      ema->swap();
      AveragedBnStats(*net, *comm, reduce_bn).keep();
      ema->swap();
    }
  }
  if (root && !summary.stopped_by_signal) {
    model::save_weights(*net, (fs::path(summary.run_dir) / "final.safetensors").string());
    if (ema) {
      ema->swap();
      model::save_weights(*net, (fs::path(summary.run_dir) / "final_ema.safetensors").string());
      ema->swap();
    }
  }
  comm->barrier("end of training");
  sync_bn.reset();
  summary.wall_s = seconds_since(t_start);
  summary.images_per_s =
      (summary.steps - start_step) * global_batch * accum / std::max(total_time, 1e-9);
  summary.data_wait_share = total_data / std::max(total_time, 1e-9);
  summary.comm_wait_share = total_comm / std::max(total_time, 1e-9);
  json::Value s = json::Value::object();
  s["type"] = "summary";
  s["steps"] = summary.steps;
  s["best_top1"] = summary.best_top1;
  s["best_step"] = summary.best_step;
  s["final_top1"] = summary.final_top1;
  if (ema) s["final_top1_ema"] = summary.final_top1_ema;
  s["wall_s"] = summary.wall_s;
  s["images_per_s"] = summary.images_per_s;
  s["data_wait_share"] = summary.data_wait_share;
  s["comm_wait_share"] = summary.comm_wait_share;
  s["checkpoint_stall_s"] = summary.checkpoint_stall_s;
  s["stopped_by_signal"] = summary.stopped_by_signal;
  if (resumed) s["resumed_from"] = resumed_from;
  record(s);
  if (root)
    util::write_text_atomically((fs::path(summary.run_dir) / "summary.json").string(),
                                s.dump(2) + "\n");
  return summary;
}

}  // namespace coatnet::train
