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

double Progress::seconds() const {
  return std::chrono::duration<double>(clock::now() - start_).count();
}

bool Progress::shows(bool line) const {
  if (!on_) return false;
  if (!bar_) return line;
  return line || seconds() - last_draw_ >= 0.1;  // the bar is redrawn at most 10 times a second
}

void Progress::update(const std::string& head, int64_t done, int64_t total, const char* unit,
                      const std::string& tail, bool line) {
  if (!shows(line)) return;
  const std::string lead = "[" + tag_ + "] " + head;
  if (!bar_) {
    std::fprintf(out_, "%s%s%s %lld/%lld  %s\n", lead.c_str(), head.empty() ? "" : "  ", unit,
                 static_cast<long long>(done), static_cast<long long>(total), tail.c_str());
    std::fflush(out_);
    return;
  }
  last_draw_ = seconds();
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
  if (!shows(true)) return;
  const double rate = done / std::max(seconds(), 1e-9);
  char tail[96];
  std::snprintf(tail, sizeof tail, "%.0f/s  ETA %s", rate,
                format_duration((total - done) / std::max(rate, 1e-9)).c_str());
  update("", done, total, unit, tail, true);
}

void Progress::message(const std::string& text) {
  if (!on_) return;
  if (bar_shown_) std::fprintf(out_, "\r\033[K");  // the bar is redrawn by the next update
  std::fprintf(out_, "%s\n", text.c_str());
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
