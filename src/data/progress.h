// "[pack] done/total (rate/s, ETA s)" lines on stderr for long packs, from rank 0 only.
#pragma once

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>

namespace coatnet::data {

class Progress {
 public:
  Progress(bool on, int64_t total, const char* unit)
      : on_(on), total_(total), unit_(unit), t0_(clock::now()) {}
  void update(int64_t done) const {
    if (!on_) return;
    const double s = std::chrono::duration<double>(clock::now() - t0_).count();
    const double rate = done / std::max(s, 1e-9);
    std::fprintf(stderr, "[pack] %lld/%lld %s (%.0f/s, ETA %.0f s)\n", static_cast<long long>(done),
                 static_cast<long long>(total_), unit_, rate,
                 (total_ - done) / std::max(rate, 1e-9));
  }

 private:
  using clock = std::chrono::steady_clock;
  bool on_;
  int64_t total_;
  const char* unit_;
  clock::time_point t0_;
};

}  // namespace coatnet::data
