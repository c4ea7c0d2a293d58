// Checkpoint plugins (backends/checkpoint-*, chosen by `checkpoint.backend`) decide how the
// training state is laid out over the ranks' shard files: which rank writes which range of
// each flat tensor (fp32 master parameters, AdamW moments, EMA, every rank's BatchNorm
// buffers). Writing, checksums, the manifest and the atomic commit are common
// (src/checkpoint), so every layout is read back — at any world size — by the same code.
// Header-inline: plugins do not link the core.
//
//   sharded       ZeRO-1: rank r of W writes [r·n/W, (r+1)·n/W) of every tensor, to its own file
//   consolidated  rank 0 writes everything to one file (small runs; one file to copy)
#pragma once

#include <algorithm>
#include <cstdint>
#include <string>
#include <utility>

namespace coatnet::checkpoint {

class Backend {
 public:
  virtual ~Backend() = default;
  virtual std::string name() const = 0;
  // [begin, end) of a flat tensor of n elements that `rank` of `world` writes; empty ranges
  // are allowed. The ranges of all ranks must tile [0, n).
  virtual std::pair<int64_t, int64_t> range(int64_t n, int rank, int world) const = 0;
};

// The even split used by `sharded` (and by loading, to give each new rank its part to read).
inline std::pair<int64_t, int64_t> even_range(int64_t n, int rank, int world) {
  const int64_t per = n / world, extra = n % world;
  const int64_t begin = rank * per + std::min<int64_t>(rank, extra);
  return {begin, begin + per + (rank < extra ? 1 : 0)};
}

}  // namespace coatnet::checkpoint
