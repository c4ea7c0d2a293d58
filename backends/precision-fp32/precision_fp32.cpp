// precision.backend: fp32 — no autocast, no scaling; only the non-finite check.
#include "plugin/abi.h"
#include "train/precision.h"

namespace coatnet::train {

namespace {
class Fp32 : public Precision {
 public:
  std::string name() const override { return "fp32"; }
  std::unique_ptr<AutocastScope> autocast(const at::Device&) const override { return nullptr; }
};

void* create(const void* args) {
  (void)args;
  return static_cast<Precision*>(new Fp32());
}

const plugin::Descriptor* describe() {
  static const plugin::Descriptor d{COATNET_PLUGIN_ABI,   "precision", "fp32", "1.0",
                                    "float32 everywhere", &create};
  return &d;
}

}  // namespace
}  // namespace coatnet::train

COATNET_PLUGIN(coatnet::train::describe)
