// precision.backend: bf16 — autocast to bfloat16 for forward and loss, on CPU and GPU. bf16 has
// float32's exponent range, so no loss scaling is needed; master weights, gradients and the
// optimizer state stay float32.
#include "plugin/abi.h"
#include "train/precision.h"

namespace coatnet::train {

namespace {
class Bf16 : public Precision {
 public:
  std::string name() const override { return "bf16"; }
  at::ScalarType compute_dtype() const override { return at::kBFloat16; }
  std::unique_ptr<AutocastScope> autocast(const at::Device& d) const override {
    return std::make_unique<AutocastScope>(d.type(), at::kBFloat16);
  }
};

void* create(const void* args) {
  (void)args;
  return static_cast<Precision*>(new Bf16());
}

const plugin::Descriptor* describe() {
  static const plugin::Descriptor d{COATNET_PLUGIN_ABI,
                                    "precision",
                                    "bf16",
                                    "1.0",
                                    "autocast to bfloat16, float32 master weights",
                                    &create};
  return &d;
}

}  // namespace
}  // namespace coatnet::train

COATNET_PLUGIN(coatnet::train::describe)
