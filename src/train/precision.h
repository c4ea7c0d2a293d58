// Mixed precision behind one interface, one plugin per folder (backends/precision-*), chosen
// by `precision.backend`:
//   fp32  everything in float32;
//   bf16  forward and loss under autocast to bfloat16 (CPU and GPU); master weights, gradients
//         and optimizer state stay float32;
//   fp16  autocast to float16 with dynamic loss scaling: the loss is multiplied by the scale
//         (initially 2^16), gradients are unscaled before clipping; a step with inf/nan
//         gradients is skipped and halves the scale, 2000 clean steps in a row double it.
//
//   auto precision = make_precision("fp16");
//   { auto scope = precision->autocast(device); loss = criterion(net->forward(x)); }
//   precision->scale_loss(loss).backward();
//   at::Tensor found_inf = at::zeros({}, grads.options());
//   precision->unscale(flat.grads, found_inf);   // same on every rank
//   ... clip (may set found_inf too), optimizer.step(lr, found_inf) ...
//   precision->update(found_inf);
//
// All on the device, as torch.amp.GradScaler: the scale is a device tensor, the inf/nan check
// and the unscale are one fused ATen op, and the scale's update reads found_inf there; only
// state() (for logs and checkpoints) reads back to the host.
#pragma once

#include <ATen/autocast_mode.h>
#include <ATen/core/Tensor.h>

#include <map>
#include <memory>
#include <string>
#include <vector>

namespace coatnet::train {

// Autocast is on while this lives (RAII). Inline, like everything in this header: plugins
// implement it without linking the core.
class AutocastScope {
 public:
  AutocastScope(at::DeviceType device, at::ScalarType dtype)
      : device_(device),
        was_enabled_(at::autocast::is_autocast_enabled(device)),
        was_dtype_(at::autocast::get_autocast_dtype(device)) {
    at::autocast::set_autocast_enabled(device_, true);
    at::autocast::set_autocast_dtype(device_, dtype);
    at::autocast::increment_nesting();
  }
  ~AutocastScope() {
    // Casts cached for this forward are freed when the outermost scope closes.
    if (at::autocast::decrement_nesting() == 0) at::autocast::clear_cache();
    at::autocast::set_autocast_enabled(device_, was_enabled_);
    at::autocast::set_autocast_dtype(device_, was_dtype_);
  }
  AutocastScope(const AutocastScope&) = delete;
  AutocastScope& operator=(const AutocastScope&) = delete;

 private:
  at::DeviceType device_;
  bool was_enabled_;
  at::ScalarType was_dtype_;
};

struct ScalerOptions {
  double init_scale = 65536.0;
  double growth_factor = 2.0, backoff_factor = 0.5;
  int64_t growth_interval = 2000;
};

class Precision {
 public:
  virtual ~Precision() = default;
  virtual std::string name() const = 0;
  // The dtype autocast computes convolutions and matrix products in (float32 for fp32): what
  // a fused kernel feeding the model should produce.
  virtual at::ScalarType compute_dtype() const { return at::kFloat; }
  // nullptr for fp32: no autocast.
  virtual std::unique_ptr<AutocastScope> autocast(const at::Device& device) const = 0;
  virtual at::Tensor scale_loss(const at::Tensor& loss) const { return loss; }
  // Unscales the (already averaged) gradients in place and sets found_inf (0-dim float32 on
  // their device) to 1 when any is inf or nan. The default does nothing: the trainer checks
  // the gradient norm anyway.
  virtual void unscale(at::Tensor& grads, at::Tensor& found_inf) {
    (void)grads;
    (void)found_inf;
  }
  // After the step: found_inf says whether it was skipped (fp16 grows or backs off its scale).
  virtual void update(const at::Tensor& found_inf) { (void)found_inf; }
  // Whether skipped steps are part of normal operation (a dynamic loss scale settling), so
  // the trainer need not report each one.
  virtual bool skips_steps_normally() const { return false; }
  // What a checkpoint must keep to resume exactly (fp16: scale and clean-step count).
  virtual std::map<std::string, double> state() const { return {}; }
  virtual void load_state(const std::map<std::string, double>& s) { (void)s; }
};

// The precision plugin `name` (fp32 | bf16 | fp16 ship with coatnet); an unknown name is an
// error listing the available ones. `args` of the plugin's create(): a ScalerOptions.
std::unique_ptr<Precision> make_precision(const std::string& name,
                                          const ScalerOptions& scaler = {});

}  // namespace coatnet::train
