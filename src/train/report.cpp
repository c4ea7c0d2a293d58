#include "train/report.h"

#include <unistd.h>

#include <cerrno>
#include <chrono>
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

std::string format_duration(double s) {
  if (!(s >= 0) || s > 1e8) return "?";
  const long t = static_cast<long>(s + 0.5);
  char buf[32];
  if (t >= 3600)
    std::snprintf(buf, sizeof buf, "%ldh%02ldm", t / 3600, (t % 3600) / 60);
  else if (t >= 60)
    std::snprintf(buf, sizeof buf, "%ldm%02lds", t / 60, t % 60);
  else
    std::snprintf(buf, sizeof buf, "%lds", t);
  return buf;
}

Progress::Progress(bool on, const std::string& style)
    : on_(on), tty_(on && (style == "bar" || (style == "auto" && isatty(STDOUT_FILENO)))) {}

namespace {
double now_s() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}
}  // namespace

void Progress::update(const ProgressLine& p, bool log_line) {
  if (!on_) return;
  char stats[160];
  if (p.images_per_s > 0)
    std::snprintf(stats, sizeof stats, "loss %.4f  lr %.2e  %.0f img/s  ETA %s", p.loss, p.lr,
                  p.images_per_s, format_duration(p.eta_s).c_str());
  else  // before the first log step there is nothing measured to show yet
    std::snprintf(stats, sizeof stats, "lr %.2e", p.lr);
  if (!tty_) {
    if (log_line)
      std::printf("[train] epoch %lld/%lld  step %lld/%lld  %s\n",
                  static_cast<long long>(p.epoch + 1), static_cast<long long>(p.epochs),
                  static_cast<long long>(p.step), static_cast<long long>(p.total_steps), stats);
    std::fflush(stdout);
    return;
  }
  const double t = now_s();
  if (!log_line && t - last_draw_ < 0.1) return;
  last_draw_ = t;
  const int width = 24;
  const int filled =
      p.total_steps > 0 ? static_cast<int>(width * static_cast<double>(p.step) / p.total_steps) : 0;
  std::string bar(filled, '#');
  bar.resize(width, '.');
  std::printf("\r\033[K[train] epoch %lld/%lld [%s] %lld/%lld  %s",
              static_cast<long long>(p.epoch + 1), static_cast<long long>(p.epochs), bar.c_str(),
              static_cast<long long>(p.step), static_cast<long long>(p.total_steps), stats);
  bar_shown_ = true;
  std::fflush(stdout);
}

void Progress::message(const std::string& text) {
  if (!on_) return;
  if (tty_ && bar_shown_) std::printf("\r\033[K");
  std::printf("%s\n", text.c_str());
  bar_shown_ = false;
  std::fflush(stdout);
}

}  // namespace coatnet::train
