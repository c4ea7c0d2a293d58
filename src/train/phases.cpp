#include "train/phases.h"

#include <atomic>
#include <csignal>
#include <ctime>
#include <filesystem>
#include <map>

#include "dist/world.h"
#include "model/weights.h"
#include "util/atomic_file.h"

namespace coatnet::train {

namespace fs = std::filesystem;

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

std::string checkpoint_root(const config::Config& cfg, const std::string& run_dir) {
  const std::string& dir = cfg.get_string("checkpoint.dir");
  return dir.empty() ? (fs::path(run_dir) / "checkpoints").string() : dir;
}

std::unique_ptr<MetricsLog> open_run_directory(bool root, const std::string& run_dir,
                                               const std::string& config_text, bool resumed) {
  if (!root) return std::make_unique<MetricsLog>();  // records nothing
  fs::create_directories(run_dir);
  util::write_text_atomically((fs::path(run_dir) / "config.yaml").string(), config_text);
  return std::make_unique<MetricsLog>((fs::path(run_dir) / "metrics.jsonl").string(),
                                      /*append=*/resumed);
}

namespace {

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

}  // namespace

Resumed resume_run(checkpoint::Checkpointer* ckpt, RunParts& run, const std::string& root,
                   const dist::World& world, util::Progress& progress) {
  Resumed r;
  const std::string& what = run.cfg.get_string("train.resume");
  if (what.empty()) return r;
  const auto dir = ckpt->find(what);
  if (!dir) {
    progress.message("[resume] no checkpoint in " + root + " yet: starting from step 0");
    return r;
  }
  r.from = *dir;
  const TrainState state = run.state();
  checkpoint::State loaded = state.collect();
  r.manifest = ckpt->load(*dir, loaded);
  const std::string note = state.restore(loaded);
  if (!note.empty()) progress.message("[resume] " + note);
  const checkpoint::Manifest& m = *r.manifest;
  const LoopOptions& loop = run.loop;
  if (m.global_batch != loop.global_batch || m.accum_steps != loop.accum)
    throw std::invalid_argument(
        r.from + " was saved with data.batch_size = " + std::to_string(m.global_batch) +
        " and optim.accum_steps = " + std::to_string(m.accum_steps) + "; this run has " +
        std::to_string(loop.global_batch) + " and " + std::to_string(loop.accum) +
        ": resuming needs the same global batch (the per-rank share may change with the "
        "world size)");
  run.train_loader.restore({m.epoch, m.samples_consumed});
  const std::string changes =
      recipe_changes((fs::path(r.from) / checkpoint::kConfigName).string(), run.cfg);
  progress.message("[resume] " + r.from + ": step " + std::to_string(m.step) + ", epoch " +
                   std::to_string(m.epoch) + " + " + std::to_string(m.samples_consumed) +
                   " samples, saved at world size " + std::to_string(m.world_size) + ", now " +
                   std::to_string(world.size()) +
                   (changes.empty() ? "" : "; recipe changes: " + changes));
  return r;
}

namespace {

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

}  // namespace

Evaluation evaluate_run(RunParts& run) {
  Evaluation out;
  const bool reduce_bn = run.loop.reduce_bn;
  {
    AveragedBnStats averaged(*run.net, *run.comm, reduce_bn);
    out.model = evaluate(*run.net, *run.val_loader, *run.comm, run.device);
  }
  if (run.ema) {
    run.ema->swap();
    {
      AveragedBnStats averaged(*run.net, *run.comm, reduce_bn);
      out.ema = evaluate(*run.net, *run.val_loader, *run.comm, run.device);
    }
    run.ema->swap();
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

void save_final_weights(RunParts& run, const std::string& run_dir, bool root) {
  model::CoAtNetImpl& net = *run.net;
  ModelEma* ema = run.ema.get();
  AveragedBnStats(net, *run.comm, run.loop.reduce_bn).keep();
  if (ema) {
    ema->swap();
    AveragedBnStats(net, *run.comm, run.loop.reduce_bn).keep();
    ema->swap();
  }
  if (root) model::save_weights(net, (fs::path(run_dir) / "final.safetensors").string());
  if (ema) {
    ema->swap();  // on every rank: under ZeRO-1 it gathers the EMA's ranges
    if (root) model::save_weights(net, (fs::path(run_dir) / "final_ema.safetensors").string());
    ema->swap();
  }
}

namespace {

std::atomic<int> stop_signal{0};
extern "C" void on_stop_signal(int sig) {
  stop_signal = sig;
}
constexpr int kStopSignals[] = {SIGUSR1, SIGUSR2, SIGTERM};

}  // namespace

StopSignals::StopSignals() {
  stop_signal = 0;
  for (int sig : kStopSignals) old_.push_back(std::signal(sig, on_stop_signal));
}

StopSignals::~StopSignals() {
  size_t i = 0;
  for (int sig : kStopSignals) std::signal(sig, old_[i++]);
}

int StopSignals::received() const {
  return stop_signal.load();
}

}  // namespace coatnet::train
