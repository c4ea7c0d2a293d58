// Counter-based randomness keyed by what a draw is about (seed, epoch, sample index, ...):
// the same key gives the same bits on every machine, rank and thread, and needs no shared
// generator state. Used by the sampler, the crop, RandAugment and Mixup/CutMix.
#pragma once

#include <cmath>
#include <cstdint>

namespace coatnet {

inline uint64_t mix64(uint64_t x) {  // SplitMix64's finalizer
  x += 0x9e3779b97f4a7c15ull;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
  return x ^ (x >> 31);
}

inline uint64_t key_of(uint64_t a, uint64_t b, uint64_t c = 0) {
  return mix64(mix64(mix64(a) ^ b) ^ c);
}

// A stream of draws from one key.
class KeyedRandom {
 public:
  explicit KeyedRandom(uint64_t key) : key_(key) {}
  uint64_t next() { return mix64(key_ + n_++); }
  // Uniform in (0, 1): never exactly 0, so log() is safe.
  double uniform() { return ((next() >> 11) + 0.5) * (1.0 / 9007199254740992.0); }
  double uniform(double lo, double hi) { return lo + (hi - lo) * uniform(); }
  // Uniform below `bound` without modulo bias (Lemire).
  uint64_t below(uint64_t bound) {
    unsigned __int128 m = static_cast<unsigned __int128>(next()) * bound;
    auto low = static_cast<uint64_t>(m);
    if (low < bound) {
      const uint64_t threshold = -bound % bound;
      while (low < threshold) {
        m = static_cast<unsigned __int128>(next()) * bound;
        low = static_cast<uint64_t>(m);
      }
    }
    return static_cast<uint64_t>(m >> 64);
  }
  double normal() {  // Box–Muller
    const double u = uniform(), v = uniform();
    return std::sqrt(-2.0 * std::log(u)) * std::cos(6.283185307179586 * v);
  }
  double gamma(double a) {  // Marsaglia–Tsang; a < 1 via gamma(a+1)·u^(1/a)
    if (a < 1.0) return gamma(a + 1.0) * std::pow(uniform(), 1.0 / a);
    const double d = a - 1.0 / 3.0, c = 1.0 / std::sqrt(9.0 * d);
    while (true) {
      const double x = normal();
      double v = 1.0 + c * x;
      if (v <= 0) continue;
      v = v * v * v;
      if (std::log(uniform()) < 0.5 * x * x + d - d * v + d * std::log(v)) return d * v;
    }
  }

 private:
  uint64_t key_, n_ = 0;
};

}  // namespace coatnet
