// Wall-clock intervals for progress, timings and stall accounting (steady, never goes back).
#pragma once

#include <chrono>

namespace coatnet {

using clock_type = std::chrono::steady_clock;

inline double seconds_since(clock_type::time_point t) {
  return std::chrono::duration<double>(clock_type::now() - t).count();
}

}  // namespace coatnet
