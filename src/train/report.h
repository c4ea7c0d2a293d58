// What a training run tells its user: `metrics.jsonl` in the run directory (one JSON record
// per line: the environment first, then one per log step and one per evaluation), and rank 0's
// progress — a live bar on a terminal, plain periodic lines otherwise (logs, Slurm).
#pragma once

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <map>
#include <string>
#include <vector>

#include "train/evaluate.h"
#include "train/trainer.h"
#include "util/clock.h"
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

// Seconds of training over the window since the last log step, and in all, and of those spent
// waiting for data and for communication. A window's time is the wall clock from its start to
// its log step's read-back of the loss, less evaluations and checkpoint saves: on a GPU a step
// only enqueues its work (a CUDA graph's replay returns at once), so the host's own time per
// step says nothing of the device's, which the host waits for at that read-back. `host` is the
// sum of the steps' host times: well below `time` when the device runs behind the host (a
// graph's replays); near it otherwise, as a full launch queue holds the host to the GPU's pace.
struct StepTimes {
  double time = 0, host = 0, data = 0, comm = 0;  // the window
  double gather = -1;  // of comm: ZeRO-1's parameter all-gather (< 0: not sharded, not reported)
  int64_t steps = 0;
  double total_time = 0, total_data = 0, total_comm = 0;
  clock_type::time_point start = clock_type::now();  // of the window
  double excluded = 0;  // seconds of the window that were not training: evaluations, saves

  void add(double host_s, double data_s, double comm_s, double gather_s = -1) {
    host += host_s;
    data += data_s;
    comm += comm_s;
    gather = gather_s < 0 ? -1 : std::max(gather, 0.0) + gather_s;
    ++steps;
  }
  void exclude(double seconds) { excluded += seconds; }
  void end_window() {  // at a log step, once the host has read a value back from the device
    time = std::max(seconds_since(start) - excluded, 1e-9);
  }
  void close_window() {  // at a log step, once its record is written
    total_time += time;
    total_data += data;
    total_comm += comm;
    time = host = data = comm = excluded = 0;
    gather = -1;
    steps = 0;
    start = clock_type::now();
  }
};

// The records of metrics.jsonl (docs/ARCHITECTURE.md "Run directory" lists their fields).
struct RunFacts {  // the "env" record: where and what runs
  int world_size = 1, ranks_per_node = 1, threads = 1, decode_threads = 1;
  std::vector<std::string> placements;  // per rank: host \t local rank \t threads \t device
  std::string comm, model;
  int64_t parameters = 0, train_samples = 0, val_samples = 0;
  int64_t global_batch = 1, accum_steps = 1, steps_per_epoch = 1, total_steps = 1;
  int64_t start_step = 0;
  std::string resumed_from;  // empty: a fresh run
};
json::Value env_record(const RunFacts& f);
// The most memory any rank held in a window of steps (-1: not known).
struct MemoryFigures {
  double peak_gib = -1;    // GPU: allocated by tensors; CPU: the process's resident set
  double device_gib = -1;  // the GPU's memory (-1 on a CPU)
  std::string of = "";     // "cuda_allocated" or "cpu_rss"
};

struct TrainFigures {  // one "train" record, at a log step
  int64_t step = 0, epoch = 0, skipped_steps = 0;
  double loss = 0, lr = 0, grad_norm = 0, data_hash = 0, images_per_s = 0, elapsed_s = 0;
  std::map<std::string, double> precision_state;
  MemoryFigures memory;
};
json::Value train_record(const TrainFigures& f, const StepTimes& window);
json::Value eval_record(const EvalResult& r, int64_t step, int64_t epoch, bool ema);
// The "summary" record, also written alone as summary.json.
json::Value summary_record(const TrainSummary& s, bool ema, const std::string& resumed_from);

struct ProgressLine {
  int64_t step = 0, total_steps = 0;
  int64_t epoch = 0, epochs = 0;
  double loss = 0, lr = 0, images_per_s = 0, eta_s = 0;
  double memory_gib = -1;  // the last window's peak (MemoryFigures::peak_gib)
};

// The training progress through util::Progress: the bar, or at log steps a line
// "[train] epoch 2/6  step 23/96  loss 1.7572  lr 8.93e-04  1243 img/s  mem 0.4G  ETA 1s".
void show_progress(util::Progress& progress, const ProgressLine& p, bool log_line);

}  // namespace coatnet::train
