// What a training run tells its user: `metrics.jsonl` in the run directory (one JSON record
// per line: the environment first, then one per log step and one per evaluation), and rank 0's
// progress — a live bar on a terminal, plain periodic lines otherwise (logs, Slurm).
#pragma once

#include <cstdint>
#include <cstdio>
#include <string>

#include "util/json.h"

namespace coatnet::train {

class MetricsLog {
 public:
  MetricsLog() = default;
  // append: continue a resumed run; else start the file afresh. Throws naming the path.
  MetricsLog(const std::string& path, bool append);
  ~MetricsLog();
  MetricsLog(const MetricsLog&) = delete;
  MetricsLog& operator=(const MetricsLog&) = delete;
  void write(const json::Value& record);  // one line, flushed: a killed run keeps its records

 private:
  std::FILE* f_ = nullptr;
};

struct ProgressLine {
  int64_t step = 0, total_steps = 0;
  int64_t epoch = 0, epochs = 0;
  double loss = 0, lr = 0, images_per_s = 0, eta_s = 0;
};

class Progress {
 public:
  // on: rank 0. style: bar, lines, or auto (the bar on a terminal). mpirun gives its ranks a
  // pseudo-terminal even when its own output goes to a file, hence the explicit choice.
  Progress(bool on, const std::string& style);
  // Redraws the bar (throttled), or prints a line when `log_line` (every log step).
  void update(const ProgressLine& p, bool log_line);
  void message(const std::string& text);  // a line of its own (evaluations, notices)

 private:
  bool on_, tty_;
  double last_draw_ = -1;
  bool bar_shown_ = false;
};

std::string format_duration(double seconds);  // "1h02m", "4m31s", "12s"

}  // namespace coatnet::train
