// What a training run tells its user: `metrics.jsonl` in the run directory (one JSON record
// per line: the environment first, then one per log step and one per evaluation), and rank 0's
// progress — a live bar on a terminal, plain periodic lines otherwise (logs, Slurm).
#pragma once

#include <cstdint>
#include <cstdio>
#include <string>

#include "util/json.h"
#include "util/progress.h"

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

// The training progress through util::Progress: the bar, or at log steps a line
// "[train] epoch 2/6  step 23/96  loss 1.7572  lr 8.93e-04  1243 img/s  ETA 1s".
void show_progress(util::Progress& progress, const ProgressLine& p, bool log_line);

}  // namespace coatnet::train
