// checkpoint.backend: consolidated — rank 0 writes the whole state to one file: one file to
// copy or archive, for small runs (the write is not spread over ranks).
#include "checkpoint/backend.h"
#include "plugin/abi.h"

namespace coatnet::checkpoint {

namespace {
class Consolidated : public Backend {
 public:
  std::string name() const override { return "consolidated"; }
  std::pair<int64_t, int64_t> range(int64_t n, int rank, int world) const override {
    (void)world;
    return rank == 0 ? std::pair<int64_t, int64_t>{0, n} : std::pair<int64_t, int64_t>{0, 0};
  }
};

void* create(const void* args) {
  (void)args;
  return static_cast<Backend*>(new Consolidated());
}

const plugin::Descriptor* describe() {
  static const plugin::Descriptor d{COATNET_PLUGIN_ABI,
                                    "checkpoint",
                                    "consolidated",
                                    "1.0",
                                    "rank 0 writes the whole state to one file",
                                    &create};
  return &d;
}
}  // namespace
}  // namespace coatnet::checkpoint

COATNET_PLUGIN(coatnet::checkpoint::describe)
