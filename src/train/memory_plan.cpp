#include "train/memory_plan.h"

#include <ATen/autocast_mode.h>
#include <torch/csrc/autograd/profiler_kineto.h>

#include <algorithm>
#include <set>
#include <utility>
#include <vector>

#include <fcntl.h>
#include <unistd.h>

#include "train/flat_params.h"

namespace coatnet::train {

namespace prof = torch::autograd::profiler;
using torch::profiler::impl::ActivityType;
using torch::profiler::impl::ProfilerConfig;
using torch::profiler::impl::ProfilerState;

namespace {

// Kineto reads its log level (KINETO_LOG_LEVEL) when the library loads, and logs every profiler
// start and stop, and without a GPU an error about counting GPUs, to stderr: noise in `coatnet
// info`'s output. Its calls here run with stderr pointed at /dev/null.
class QuietStderr {
 public:
  QuietStderr() : saved_(dup(2)) {
    const int null = open("/dev/null", O_WRONLY);
    if (saved_ >= 0 && null >= 0) dup2(null, 2);
    if (null >= 0) close(null);
  }
  ~QuietStderr() {
    if (saved_ < 0) return;
    dup2(saved_, 2);
    close(saved_);
  }
  QuietStderr(const QuietStderr&) = delete;
  QuietStderr& operator=(const QuietStderr&) = delete;

 private:
  int saved_;
};

// The most bytes a training step (forward, then backward of the mean squared logits) has
// allocated at once on the CPU beyond what it started with, for `images` images in training
// mode under autocast to `dtype`. Gradients go into buffers allocated before (as the trainer's
// flat gradients are), so they are not counted.
int64_t step_peak(model::CoAtNet& net, int64_t images, at::ScalarType dtype) {
  const model::ModelSpec& s = net->spec;
  const at::Tensor x = at::randn({images, s.in_chans, s.image_size, s.image_size});
  const ProfilerConfig config(ProfilerState::KINETO, /*report_input_shapes=*/false,
                              /*profile_memory=*/true);
  const std::set<ActivityType> cpu{ActivityType::CPU};
  std::unique_ptr<prof::ProfilerResult> result;
  {
    const QuietStderr quiet;
    prof::prepareProfiler(config, cpu);
    prof::enableProfiler(config, cpu);
    {
      const bool low = dtype != at::kFloat;
      at::autocast::set_autocast_enabled(at::kCPU, low);
      if (low) at::autocast::set_autocast_dtype(at::kCPU, dtype);
      at::Tensor loss = net->forward(x).to(at::kFloat).pow(2).mean();
      at::autocast::set_autocast_enabled(at::kCPU, false);
      loss.backward();
      at::autocast::clear_cache();
    }
    result = prof::disableProfiler();
  }
  std::vector<std::pair<uint64_t, int64_t>> events;  // (time, bytes allocated (+) or freed (-))
  for (const prof::KinetoEvent& e : result->events())
    if (e.name() == "[memory]" && e.deviceType() == c10::DeviceType::CPU)
      events.emplace_back(e.startNs(), e.nBytes());
  std::stable_sort(events.begin(), events.end(),
                   [](const auto& a, const auto& b) { return a.first < b.first; });
  int64_t live = 0, peak = 0;
  for (const auto& [t, bytes] : events) peak = std::max(peak, live += bytes);
  return peak;
}

}  // namespace

int64_t flat_bytes(const std::vector<int64_t>& numels) {
  const int64_t a = FlatParams::kAlignElements;
  int64_t total = 0;
  for (int64_t n : numels) total += (n + a - 1) / a * a;
  return total * static_cast<int64_t>(sizeof(float));
}

MemoryPlan plan_memory(model::CoAtNet& net, const MemoryPlanOptions& o) {
  MemoryPlan m;
  std::vector<int64_t> numels;
  int64_t buffer_bytes = 0;
  for (const at::Tensor& p : net->parameters()) numels.push_back(p.numel());
  for (const at::Tensor& b : net->buffers()) buffer_bytes += b.numel() * b.element_size();
  m.params_bytes = m.grads_bytes = flat_bytes(numels);
  m.optimizer_bytes = 3 * m.params_bytes;  // exp_avg, exp_avg_sq, decay_mask
  m.ema_bytes = o.ema ? m.params_bytes + buffer_bytes : 0;
  // Training-mode forwards update BatchNorm's running statistics: put them back after.
  std::vector<at::Tensor> buffers, saved;
  for (at::Tensor& t : net->buffers()) {
    buffers.push_back(t);
    saved.push_back(t.clone());
  }
  std::vector<at::Tensor> params = net->parameters();
  for (at::Tensor& p : params) p.mutable_grad() = at::zeros_like(p);
  const bool was_training = net->is_training();
  net->train();
  const int64_t one = step_peak(net, 1, o.dtype), two = step_peak(net, 2, o.dtype);
  net->train(was_training);
  {
    at::NoGradGuard no_grad;
    for (size_t i = 0; i < buffers.size(); ++i) buffers[i].copy_(saved[i]);
  }
  for (at::Tensor& p : params) p.mutable_grad() = at::Tensor();
  m.per_image_bytes = two - one;
  m.step_fixed_bytes = std::max<int64_t>(one - m.per_image_bytes, 0);
  m.activations_bytes = m.per_image_bytes * o.per_rank_batch;
  return m;
}

}  // namespace coatnet::train
