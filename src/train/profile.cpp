#include "train/profile.h"

#include <torch/csrc/autograd/profiler_kineto.h>
#include <torch/cuda.h>

#include <algorithm>
#include <filesystem>
#include <map>
#include <set>
#include <utility>

#include <fcntl.h>
#include <unistd.h>

#include "util/atomic_file.h"
#include "util/clock.h"

namespace coatnet::train {

namespace prof = torch::autograd::profiler;
using torch::profiler::impl::ActivityType;
using torch::profiler::impl::ProfilerConfig;
using torch::profiler::impl::ProfilerState;

namespace {

std::set<ActivityType> activities(bool cuda) {
  std::set<ActivityType> a{ActivityType::CPU};
  if (cuda) a.insert(ActivityType::CUDA);
  return a;
}

// With each operator's input shapes, strides and dtypes in the trace: whether ATen took a
// vectorised kernel or its generic strided one depends on them (tests/bench/trace_ops.py).
ProfilerConfig config() {
  return ProfilerConfig(ProfilerState::KINETO, /*report_input_shapes=*/true);
}

double now_s() {
  return std::chrono::duration<double>(clock_type::now().time_since_epoch()).count();
}

// Kernels from a GPU profile (their device is the GPU); on a CPU run, the ATen operators.
std::vector<KernelSpan> spans_of(const prof::ProfilerResult& result, bool cuda) {
  std::vector<KernelSpan> spans;
  for (const prof::KinetoEvent& e : result.events()) {
    const bool on_gpu = e.deviceType() == c10::DeviceType::CUDA;
    if (on_gpu != cuda || e.durationNs() == 0) continue;
    spans.push_back({e.name(), e.startNs(), e.endNs()});
  }
  return spans;
}

// Kineto reads its log level (KINETO_LOG_LEVEL) when the library loads and logs every profiler
// start and stop, and without a GPU an error about counting GPUs, to stderr: noise in `coatnet
// info`'s output. While one of these lives, stderr points at /dev/null.
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

}  // namespace

int64_t peak_cpu_bytes(const std::function<void()>& work) {
  const ProfilerConfig config(ProfilerState::KINETO, /*report_input_shapes=*/false,
                              /*profile_memory=*/true);
  const std::set<ActivityType> cpu = activities(false);
  std::unique_ptr<prof::ProfilerResult> result;
  {
    const QuietStderr quiet;
    prof::prepareProfiler(config, cpu);
    prof::enableProfiler(config, cpu);
    work();
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

json::Value profile_summary(std::vector<KernelSpan> kernels, int64_t steps, double wall_s,
                            std::size_t top) {
  std::sort(kernels.begin(), kernels.end(),
            [](const KernelSpan& a, const KernelSpan& b) { return a.start_ns < b.start_ns; });
  // Busy time: the union of the spans, so that kernels on two streams at once count once.
  uint64_t busy_ns = 0, open_start = 0, open_end = 0;
  bool open = false;
  std::map<std::string, std::pair<int64_t, uint64_t>> by_name;  // calls, total ns
  for (const KernelSpan& k : kernels) {
    auto& [calls, total] = by_name[k.name];
    ++calls;
    total += k.end_ns - k.start_ns;
    if (open && k.start_ns <= open_end) {
      open_end = std::max(open_end, k.end_ns);
      continue;
    }
    if (open) busy_ns += open_end - open_start;
    open = true;
    open_start = k.start_ns;
    open_end = k.end_ns;
  }
  if (open) busy_ns += open_end - open_start;

  std::vector<std::pair<std::string, std::pair<int64_t, uint64_t>>> rows(by_name.begin(),
                                                                         by_name.end());
  std::sort(rows.begin(), rows.end(),
            [](const auto& a, const auto& b) { return a.second.second > b.second.second; });
  const double per_step = 1.0 / static_cast<double>(std::max<int64_t>(steps, 1));
  const double busy_ms = busy_ns * 1e-6 * per_step, wall_ms = wall_s * 1e3 * per_step;
  json::Value out = json::Value::object();
  out["steps"] = steps;
  out["wall_ms_per_step"] = wall_ms;
  out["busy_ms_per_step"] = busy_ms;
  out["busy_share"] = wall_ms > 0 ? busy_ms / wall_ms : 0.0;
  out["kernels_per_step"] = static_cast<double>(kernels.size()) * per_step;
  json::Value list = json::Value::array();
  for (std::size_t i = 0; i < rows.size() && i < top; ++i) {
    const double ms = rows[i].second.second * 1e-6 * per_step;
    list.push_back({{"name", rows[i].first},
                    {"calls_per_step", rows[i].second.first * per_step},
                    {"ms_per_step", ms},
                    {"share_of_busy", busy_ms > 0 ? ms / busy_ms : 0.0}});
  }
  out["top"] = std::move(list);
  return out;
}

StepProfiler::StepProfiler(int64_t start, int64_t steps, bool cuda, std::string dir,
                           std::function<void(const std::string&)> say)
    : start_(start), steps_(steps), cuda_(cuda), dir_(std::move(dir)), say_(std::move(say)) {
  if (steps_ > 0) prof::prepareProfiler(config(), activities(cuda_));
}

StepProfiler::~StepProfiler() {
  if (active_) prof::disableProfiler();  // a run that ended inside the window: nothing written
}

void StepProfiler::before_step(int64_t step) {
  if (steps_ <= 0 || step != start_) return;
  if (cuda_) torch::cuda::synchronize();  // the window holds these steps' work only
  prof::enableProfiler(config(), activities(cuda_));
  active_ = true;
  t0_s_ = now_s();
}

void StepProfiler::after_step(int64_t step) {
  if (!active_ || step != start_ + steps_ - 1) return;
  if (cuda_) torch::cuda::synchronize();
  const double wall_s = now_s() - t0_s_;
  active_ = false;
  std::unique_ptr<prof::ProfilerResult> result = prof::disableProfiler();
  if (dir_.empty()) return;  // not rank 0
  std::filesystem::create_directories(dir_);
  result->save(dir_ + "/trace.json");
  json::Value s = profile_summary(spans_of(*result, cuda_), steps_, wall_s);
  s["first_step"] = start_;
  s["device"] = cuda_ ? "cuda" : "cpu";
  util::write_text_atomically(dir_ + "/summary.json", s.dump(1) + "\n");
  char line[256];
  std::snprintf(line, sizeof line,
                "[train] profile of steps %lld-%lld: %.1f ms per step, %s busy %.1f ms (%.0f%%); "
                "%s/{trace,summary}.json",
                static_cast<long long>(start_ + 1), static_cast<long long>(start_ + steps_),
                s["wall_ms_per_step"].get<double>(), cuda_ ? "GPU" : "CPU operators",
                s["busy_ms_per_step"].get<double>(), 100 * s["busy_share"].get<double>(),
                dir_.c_str());
  say_(line);
}

}  // namespace coatnet::train
