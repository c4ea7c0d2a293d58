// precision.backend: fp16 — autocast to float16 with dynamic loss scaling (as
// torch.amp.GradScaler): the loss is multiplied by the scale so small gradients survive in
// float16; gradients are unscaled before clipping; a step whose gradients hold inf/nan is
// skipped and the scale halves; after growth_interval clean steps in a row it doubles.
#include <ATen/ATen.h>

#include "plugin/abi.h"
#include "train/precision.h"

namespace coatnet::train {

namespace {
// torch.amp.GradScaler's arithmetic, with its ATen ops: the scale and the clean-step count
// are device tensors, created on the device of the first loss they scale.
class Fp16 : public Precision {
 public:
  explicit Fp16(const ScalerOptions& o) : opt_(o) {}
  std::string name() const override { return "fp16"; }
  at::ScalarType compute_dtype() const override { return at::kHalf; }
  std::unique_ptr<AutocastScope> autocast(const at::Device& d) const override {
    return std::make_unique<AutocastScope>(d.type(), at::kHalf);
  }
  at::Tensor scale_loss(const at::Tensor& loss) const override {
    on(loss.device());
    return loss * scale_;
  }
  void unscale(at::Tensor& grads, at::Tensor& found_inf) override {
    on(grads.device());
    at::_amp_foreach_non_finite_check_and_unscale_({grads}, found_inf, scale_.reciprocal());
  }
  void update(const at::Tensor& found_inf) override {
    on(found_inf.device());
    at::_amp_update_scale_(scale_, clean_, found_inf, opt_.growth_factor, opt_.backoff_factor,
                           opt_.growth_interval);
  }
  bool skips_steps_normally() const override { return true; }
  std::map<std::string, double> state() const override {
    on(at::kCPU);
    return {{"scale", scale_.item<double>()}, {"clean_steps", clean_.item<double>()}};
  }
  void load_state(const std::map<std::string, double>& s) override {
    on(at::kCPU);
    scale_.fill_(s.at("scale"));
    clean_.fill_(s.at("clean_steps"));
  }

 private:
  // The state lives where the gradients are; made (from the options) on first use.
  void on(const at::Device& d) const {
    if (!scale_.defined()) {
      scale_ = at::full({}, opt_.init_scale, at::TensorOptions().dtype(at::kFloat).device(d));
      clean_ = at::zeros({}, at::TensorOptions().dtype(at::kInt).device(d));
    } else if (scale_.device() != d && !d.is_cpu()) {
      scale_ = scale_.to(d);
      clean_ = clean_.to(d);
    }
  }
  ScalerOptions opt_;
  mutable at::Tensor scale_, clean_;
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
