// checkpoint.backend: sharded — ZeRO-1: every rank writes an even 1/W of each flat tensor to
// its own shard, so a save's I/O is spread over all ranks (and all nodes' disks or links).
#include <algorithm>

#include "checkpoint/backend.h"
#include "plugin/abi.h"

namespace coatnet::checkpoint {

namespace {
class Sharded : public Backend {
 public:
  std::string name() const override { return "sharded"; }
  std::pair<int64_t, int64_t> range(int64_t n, int rank, int world) const override {
    return even_range(n, rank, world);
  }
};

void* create(const void* args) {
  (void)args;
  return static_cast<Backend*>(new Sharded());
}

const plugin::Descriptor* describe() {
  static const plugin::Descriptor d{COATNET_PLUGIN_ABI,
                                    "checkpoint",
                                    "sharded",
                                    "1.0",
                                    "ZeRO-1: each rank writes 1/W of the state to its own shard",
                                    &create};
  return &d;
}
}  // namespace
}  // namespace coatnet::checkpoint

COATNET_PLUGIN(coatnet::checkpoint::describe)
