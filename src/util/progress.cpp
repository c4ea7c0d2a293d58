#include "util/progress.h"

#include <unistd.h>

#include <algorithm>
#include <stdexcept>

namespace coatnet::util {

Progress::Style Progress::style(const std::string& name) {
  if (name == "auto") return Style::Auto;
  if (name == "bar") return Style::Bar;
  if (name == "lines") return Style::Lines;
  throw std::invalid_argument("progress style '" + name + "': expected auto, bar or lines");
}

Progress::Progress(bool on, Style style, std::FILE* out, std::string tag)
    : on_(on),
      bar_(on && (style == Style::Bar || (style == Style::Auto && isatty(fileno(out))))),
      out_(out),
      tag_(std::move(tag)) {}

void Progress::update(const std::string& head, int64_t done, int64_t total, const char* unit,
                      const std::string& tail, bool line) {
  if (!on_) return;
  const std::string lead = "[" + tag_ + "] " + head;
  if (!bar_) {
    if (line)
      std::fprintf(out_, "%s%s%s %lld/%lld  %s\n", lead.c_str(), head.empty() ? "" : "  ", unit,
                   static_cast<long long>(done), static_cast<long long>(total), tail.c_str());
    std::fflush(out_);
    return;
  }
  const double t = std::chrono::duration<double>(clock::now() - start_).count();
  if (!line && t - last_draw_ < 0.1) return;
  last_draw_ = t;
  const int width = 24;
  const int filled =
      total > 0 ? static_cast<int>(width * static_cast<double>(std::min(done, total)) / total) : 0;
  std::string bar(filled, '#');
  bar.resize(width, '.');
  std::fprintf(out_, "\r\033[K%s [%s] %lld/%lld  %s", lead.c_str(), bar.c_str(),
               static_cast<long long>(done), static_cast<long long>(total), tail.c_str());
  bar_shown_ = true;
  std::fflush(out_);
}

void Progress::count(int64_t done, int64_t total, const char* unit) {
  if (!on_) return;
  const double s = std::chrono::duration<double>(clock::now() - start_).count();
  const double rate = done / std::max(s, 1e-9);
  char tail[96];
  std::snprintf(tail, sizeof tail, "%.0f/s  ETA %s", rate,
                format_duration((total - done) / std::max(rate, 1e-9)).c_str());
  update("", done, total, unit, tail, true);
  if (bar_ && done >= total) message("");  // the finished bar keeps its line
}

void Progress::message(const std::string& text) {
  if (!on_) return;
  if (bar_shown_) std::fprintf(out_, text.empty() ? "\n" : "\r\033[K");
  if (!text.empty() || !bar_shown_) std::fprintf(out_, "%s\n", text.c_str());
  bar_shown_ = false;
  std::fflush(out_);
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

}  // namespace coatnet::util
