#include "train/report.h"

#include <cerrno>
#include <cstring>
#include <stdexcept>

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

void show_progress(util::Progress& progress, const ProgressLine& p, bool log_line) {
  if (!progress.shows(log_line)) return;  // called every step, on every rank
  char stats[160];
  if (p.images_per_s > 0)
    std::snprintf(stats, sizeof stats, "loss %.4f  lr %.2e  %.0f img/s  ETA %s", p.loss, p.lr,
                  p.images_per_s, util::format_duration(p.eta_s).c_str());
  else  // before the first log step there is nothing measured to show yet
    std::snprintf(stats, sizeof stats, "lr %.2e", p.lr);
  const std::string epoch = "epoch " + std::to_string(p.epoch + 1) + "/" + std::to_string(p.epochs);
  progress.update(epoch, p.step, p.total_steps, "step", stats, log_line);
}

}  // namespace coatnet::train
