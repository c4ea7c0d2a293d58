// One progress reporter for long work — training steps, packed records — shown by rank 0 only.
// On a terminal: one line redrawn in place, at most 10 times a second. Elsewhere (a file,
// mpirun's pipes, or when asked for lines): a line for each update that asks for one.
//
//   util::Progress p(rank == 0, util::Progress::style("auto"), stdout, "train");
//   p.update("epoch 1/300", step, total_steps, "step", "loss 2.31  ETA 4h02m", log_step);
//   p.message("[eval] top-1 81.2%");        // a line of its own, under the bar
//   util::Progress q(rank == 0, util::Progress::Style::Lines, stderr, "pack");
//   q.count(done, total, "records");         // "[pack] records 300/1000  5120/s  ETA 1s"
#pragma once

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <string>

namespace coatnet::util {

class Progress {
 public:
  enum class Style { Auto, Bar, Lines };
  // "auto" (the bar on a terminal), "bar" or "lines". mpirun gives its ranks a pseudo-terminal
  // even when its own output goes to a file, hence the explicit choice.
  static Style style(const std::string& name);

  Progress(bool on, Style style, std::FILE* out, std::string tag);

  // "[tag] HEAD  UNIT done/total  TAIL" as a line (when `line`), or "[tag] HEAD [###..]
  // done/total  TAIL" as the bar.
  void update(const std::string& head, int64_t done, int64_t total, const char* unit,
              const std::string& tail, bool line);
  // Whether update(..., line) would print anything: callers skip formatting the text when not
  // (every step of training calls it, on every rank).
  bool shows(bool line) const;
  // Counted work, with the rate and ETA since this reporter was made (for Style::Lines).
  void count(int64_t done, int64_t total, const char* unit);
  void message(const std::string& text);

 private:
  using clock = std::chrono::steady_clock;
  double seconds() const;  // since this reporter was made
  bool on_, bar_;
  std::FILE* out_;
  std::string tag_;
  clock::time_point start_ = clock::now();
  double last_draw_ = -1;
  bool bar_shown_ = false;
};

std::string format_duration(double seconds);  // "1h02m", "4m31s", "12s"; "?" when unknown

}  // namespace coatnet::util
