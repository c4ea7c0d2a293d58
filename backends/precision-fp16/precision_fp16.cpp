// precision.backend: fp16 — autocast to float16 with dynamic loss scaling (as
// torch.amp.GradScaler): the loss is multiplied by the scale so small gradients survive in
// float16; gradients are unscaled before clipping; a step whose gradients hold inf/nan is
// skipped and the scale halves; after growth_interval clean steps in a row it doubles.
#include <ATen/ATen.h>

#include "plugin/abi.h"
#include "train/precision.h"

namespace coatnet::train {

namespace {
class Fp16 : public Precision {
 public:
  explicit Fp16(const ScalerOptions& o) : opt_(o), scale_(o.init_scale) {}
  std::string name() const override { return "fp16"; }
  std::unique_ptr<AutocastScope> autocast(const at::Device& d) const override {
    return std::make_unique<AutocastScope>(d.type(), at::kHalf);
  }
  at::Tensor scale_loss(const at::Tensor& loss) const override { return loss * scale_; }
  bool unscale_and_check(at::Tensor& grads) override {
    grads.mul_(1.0 / scale_);
    return grads.isfinite().all().item<bool>();
  }
  void update(bool finite) override {
    if (!finite) {
      scale_ *= opt_.backoff_factor;
      clean_ = 0;
    } else if (++clean_ >= opt_.growth_interval) {
      scale_ *= opt_.growth_factor;
      clean_ = 0;
    }
  }
  std::map<std::string, double> state() const override {
    return {{"scale", scale_}, {"clean_steps", static_cast<double>(clean_)}};
  }
  void load_state(const std::map<std::string, double>& s) override {
    scale_ = s.at("scale");
    clean_ = static_cast<int64_t>(s.at("clean_steps"));
  }

 private:
  ScalerOptions opt_;
  double scale_;
  int64_t clean_ = 0;
};

void* create(const void* args) {
  return static_cast<Precision*>(new Fp16(*static_cast<const ScalerOptions*>(args)));
}

const plugin::Descriptor* describe() {
  static const plugin::Descriptor d{COATNET_PLUGIN_ABI,
                                    "precision",
                                    "fp16",
                                    "1.0",
                                    "autocast to float16 + dynamic loss scaling",
                                    &create};
  return &d;
}

}  // namespace
}  // namespace coatnet::train

COATNET_PLUGIN(coatnet::train::describe)
