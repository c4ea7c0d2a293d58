#include "train/report.h"

#include <torch/version.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <stdexcept>

#include "util/text.h"

namespace coatnet::train {

MetricsLog::MetricsLog(const std::string& path, bool append) {
  f_ = std::fopen(path.c_str(), append ? "a" : "w");
  if (!f_)
    throw std::runtime_error("cannot open " + path + " for writing: " + std::strerror(errno));
}

MetricsLog::~MetricsLog() {
  if (f_) std::fclose(f_);
}

void MetricsLog::write(const json::Value& record) {
  if (!f_) return;
  std::string line = record.dump() + "\n";
  std::fwrite(line.data(), 1, line.size(), f_);
  std::fflush(f_);
}

json::Value env_record(const RunFacts& f) {
  json::Value env = json::Value::object();
  env["type"] = "env";
  env["torch"] = TORCH_VERSION;
  env["world_size"] = f.world_size;
  env["ranks_per_node"] = f.ranks_per_node;
  json::Value ranks = json::Value::array();
  for (size_t r = 0; r < f.placements.size(); ++r) {
    const std::vector<std::string> p = text::split(f.placements[r], '\t');
    json::Value rank = json::Value::object();
    rank["rank"] = static_cast<int64_t>(r);
    rank["host"] = p.at(0);
    rank["local_rank"] = static_cast<int64_t>(std::stoll(p.at(1)));
    rank["threads"] = static_cast<int64_t>(std::stoll(p.at(2)));
    rank["device"] = p.at(3);
    ranks.push_back(rank);
  }
  env["ranks"] = ranks;
  env["comm"] = f.comm;
  env["threads_per_rank"] = f.threads;
  env["decode_threads_per_rank"] = f.decode_threads;
  env["model"] = f.model;
  env["parameters"] = f.parameters;
  env["train_samples"] = f.train_samples;
  env["val_samples"] = f.val_samples;
  env["global_batch"] = f.global_batch;
  env["accum_steps"] = f.accum_steps;
  env["steps_per_epoch"] = f.steps_per_epoch;
  env["total_steps"] = f.total_steps;
  env["start_step"] = f.start_step;
  if (!f.resumed_from.empty()) env["resumed_from"] = f.resumed_from;
  return env;
}

json::Value train_record(const TrainFigures& f, const StepTimes& window) {
  const double n = static_cast<double>(std::max<int64_t>(window.steps, 1));
  json::Value rec = json::Value::object();
  rec["type"] = "train";
  rec["step"] = f.step;
  rec["epoch"] = f.epoch;
  rec["loss"] = f.loss;
  rec["lr"] = f.lr;
  rec["grad_norm"] = f.grad_norm;
  rec["data_hash"] = f.data_hash;
  rec["skipped_steps"] = f.skipped_steps;
  for (const auto& [k, v] : f.precision_state) rec["precision_" + k] = v;
  rec["images_per_s"] = f.images_per_s;
  rec["step_s"] = window.time / n;
  rec["host_step_s"] = window.host / n;
  rec["data_wait_s"] = window.data / n;
  rec["comm_wait_s"] = window.comm / n;
  if (window.gather >= 0) rec["param_gather_wait_s"] = window.gather / n;  // ZeRO-1 only
  if (f.memory.peak_gib >= 0) {
    rec["peak_memory_gib"] = f.memory.peak_gib;
    rec["peak_memory_of"] = f.memory.of;
  }
  if (f.memory.device_gib >= 0) rec["device_memory_gib"] = f.memory.device_gib;
  rec["elapsed_s"] = f.elapsed_s;
  return rec;
}

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

json::Value summary_record(const TrainSummary& summary, bool ema, const std::string& resumed_from) {
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
  if (summary.peak_memory_gib >= 0) s["peak_memory_gib"] = summary.peak_memory_gib;
  s["stopped_by_signal"] = summary.stopped_by_signal;
  if (!resumed_from.empty()) s["resumed_from"] = resumed_from;
  return s;
}

void show_progress(util::Progress& progress, const ProgressLine& p, bool log_line) {
  if (!progress.shows(log_line)) return;  // called every step, on every rank
  char stats[160];
  char memory[32] = "";  // the window's peak, as nvidia-smi users read it
  if (p.memory_gib >= 0) std::snprintf(memory, sizeof memory, "  mem %.1fG", p.memory_gib);
  if (p.images_per_s > 0)
    std::snprintf(stats, sizeof stats, "loss %.4f  lr %.2e  %.0f img/s%s  ETA %s", p.loss, p.lr,
                  p.images_per_s, memory, util::format_duration(p.eta_s).c_str());
  else  // before the first log step there is nothing measured to show yet
    std::snprintf(stats, sizeof stats, "lr %.2e", p.lr);
  const std::string epoch = "epoch " + std::to_string(p.epoch + 1) + "/" + std::to_string(p.epochs);
  progress.update(epoch, p.step, p.total_steps, "step", stats, log_line);
}

}  // namespace coatnet::train
