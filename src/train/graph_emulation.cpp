#include "train/graph_emulation.h"

#include <ATen/core/Tensor.h>
#include <ATen/core/ivalue.h>
#include <ATen/record_function.h>
#include <c10/core/Allocator.h>
#include <c10/util/ThreadLocalDebugInfo.h>

#include <algorithm>
#include <atomic>
#include <memory>
#include <sstream>
#include <stdexcept>
#include <thread>
#include <unordered_map>
#include <unordered_set>
#include <utility>

namespace coatnet::train {

namespace {

// One recording's state. The observers are plain functions (RecordFunction's interface), so they
// reach it through a global: one recording at a time. Only the recording thread counts (so no
// lock is needed): on a CPU the autograd engine runs backward on it, and other threads (the
// loader's) are not the step's.
//
// Only the work's own operator calls are compared, not those inside an operator: these are its
// CPU kernel's way (the CPU AdamW reads its learning rate and found_inf on the host and skips a
// step by a branch), not what the operator does on a GPU.
struct Recording {
  std::thread::id thread = std::this_thread::get_id();
  // Memory made during the work, named by the operator call that returned it ("op12.0": call 12,
  // output 0): a graph gives it the same place at each replay.
  std::unordered_map<const void*, std::string> names;
  std::unordered_set<const void*> fresh;  // allocated during the current operator call
  int depth = 0;                          // of ATen operators inside ATen operators
  RecordedOps out;
};
std::atomic<Recording*> g_recording{nullptr};

Recording* recording() {
  Recording* r = g_recording.load();
  return r && std::this_thread::get_id() == r->thread ? r : nullptr;
}

// Told of every allocation and release by the CPU allocator (its memory-profiling hook).
class AllocationHook final : public c10::MemoryReportingInfoBase {
 public:
  explicit AllocationHook(Recording& r) : r_(r) {}
  void reportMemoryUsage(void* ptr, int64_t size, size_t, size_t, c10::Device) override {
    if (std::this_thread::get_id() != r_.thread) return;
    if (size > 0) {
      r_.fresh.insert(ptr);
    } else {
      r_.fresh.erase(ptr);
      r_.names.erase(ptr);
    }
  }
  bool memoryProfilingEnabled() const override { return true; }

 private:
  Recording& r_;
};

// A tensor as a graph would see it: where its memory is, and its shape. Memory made during the
// work is named by the call that returned it, memory from before by its address (@0x...).
void describe_tensor(std::ostringstream& os, const at::Tensor& t, const Recording& r) {
  if (!t.defined()) {
    os << "undefined";
    return;
  }
  if (!t.has_storage()) {
    os << "no-storage";
  } else {
    const void* p = t.storage().data();
    if (const auto it = r.names.find(p); it != r.names.end())
      os << it->second;
    else
      os << '@' << p;
    os << '+' << t.storage_offset();
  }
  os << ' ' << t.scalar_type() << t.sizes() << t.strides();
}

void describe(std::ostringstream& os, const c10::IValue& v, const Recording& r) {
  if (v.isTensor()) {
    describe_tensor(os, v.toTensor(), r);
  } else if (v.isList()) {
    os << '[';
    for (const c10::IValue& e : v.toListRef()) {
      describe(os, e, r);
      os << ", ";
    }
    os << ']';
  } else if (v.isTuple()) {
    os << '(';
    for (const c10::IValue& e : v.toTupleRef().elements()) {
      describe(os, e, r);
      os << ", ";
    }
    os << ')';
  } else if (v.isDouble()) {
    os << std::hexfloat << v.toDouble() << std::defaultfloat;  // every bit of it
  } else if (v.isGenerator()) {
    os << "generator";  // its state is read by the kernel, as a graph's replay does
  } else {
    os << v;
  }
}

// Names the memory of the outputs that `call` allocated (not views of memory from before).
void name_outputs(const c10::IValue& v, const std::string& call, Recording& r) {
  if (v.isTensor()) {
    const at::Tensor& t = v.toTensor();
    if (t.defined() && t.has_storage() && r.fresh.count(t.storage().data()))
      r.names[t.storage().data()] = call;
  } else if (v.isList()) {
    size_t j = 0;
    for (const c10::IValue& e : v.toListRef()) name_outputs(e, call + "." + std::to_string(j++), r);
  } else if (v.isTuple()) {
    size_t j = 0;
    for (const c10::IValue& e : v.toTupleRef().elements())
      name_outputs(e, call + "." + std::to_string(j++), r);
  }
}

// Operators whose result the host reads (a synchronisation), which a CUDA capture refuses.
bool reads_on_host(const char* op) {
  static const std::unordered_set<std::string> kReads = {
      "aten::_local_scalar_dense", "aten::item", "aten::is_nonzero", "aten::nonzero", "aten::equal",
      "aten::masked_select"};
  return kReads.count(op) > 0;
}

std::unique_ptr<at::ObserverContext> on_operator(const at::RecordFunction& fn) {
  Recording* r = recording();
  if (!r) return nullptr;
  const bool op = fn.scope() == at::RecordScope::FUNCTION;
  if (r->depth > 0) {  // inside another operator
    if (op) ++r->depth;
    return nullptr;
  }
  if (op) ++r->depth;
  r->fresh.clear();
  if (op && reads_on_host(fn.name())) r->out.host_reads.push_back(r->out.ops.size());
  std::ostringstream os;
  os << fn.name() << '(';
  for (const c10::IValue& v : fn.inputs()) {
    describe(os, v, *r);
    os << ", ";
  }
  os << ')';
  r->out.ops.push_back(os.str());
  return nullptr;
}

void after_operator(const at::RecordFunction& fn, at::ObserverContext*) {
  Recording* r = recording();
  if (!r || fn.scope() != at::RecordScope::FUNCTION) return;
  if (--r->depth > 0) return;
  const std::string call = "op" + std::to_string(r->out.ops.size() - 1);
  const std::vector<c10::IValue>& outputs = fn.outputs();
  for (size_t j = 0; j < outputs.size(); ++j)
    name_outputs(outputs[j], call + "." + std::to_string(j), *r);
}

std::string shortened(const std::string& s) {
  constexpr size_t kMost = 400;
  return s.size() <= kMost ? s : s.substr(0, kMost) + "...";
}

void refuse_host_reads(const RecordedOps& rec, int64_t step) {
  if (rec.host_reads.empty()) return;
  const size_t i = rec.host_reads.front();
  throw std::runtime_error("train.cuda_graph (emulated on the CPU): step " + std::to_string(step) +
                           "'s device work reads a result on the host (operator " +
                           std::to_string(i) + " of " + std::to_string(rec.ops.size()) + ": " +
                           shortened(rec.ops[i]) +
                           "), which a CUDA graph's capture refuses: keep the value on the "
                           "device, or read it after the replay");
}

}  // namespace

RecordedOps record_ops(const std::function<void()>& work) {
  Recording r;
  Recording* none = nullptr;
  if (!g_recording.compare_exchange_strong(none, &r))
    throw std::logic_error("record_ops: another recording is running");
  struct Release {
    ~Release() { g_recording.store(nullptr); }
  } release;
  c10::DebugInfoGuard allocations(c10::DebugInfoKind::PROFILER_STATE,
                                  std::make_shared<AllocationHook>(r));
  struct Observer {
    at::CallbackHandle handle;
    ~Observer() { at::removeCallback(handle); }
  } observer{at::addThreadLocalCallback(at::RecordFunctionCallback(&on_operator, &after_operator)
                                            .needsInputs(true)
                                            .needsOutputs(true))};
  work();
  return std::move(r.out);
}

void EmulatedGraph::capture(std::function<void()> work, int64_t step) {
  if (captured()) throw std::logic_error("EmulatedGraph::capture: already captured");
  RecordedOps rec = record_ops(work);
  refuse_host_reads(rec, step);
  ops_ = std::move(rec.ops);
  work_ = std::move(work);
  capture_step_ = step;
}

void EmulatedGraph::replay(int64_t step) {
  if (!captured()) throw std::logic_error("EmulatedGraph::replay: nothing captured");
  const RecordedOps rec = record_ops(work_);
  refuse_host_reads(rec, step);
  const std::vector<std::string>& ops = rec.ops;
  const std::string what = "train.cuda_graph (emulated on the CPU): step " + std::to_string(step) +
                           "'s device work is not the one captured at step " +
                           std::to_string(capture_step_) + ": ";
  const std::string why =
      ". A CUDA graph replays the capture's operators with the capture's arguments and memory: "
      "what the host decides inside the graphed work (a number, a tensor made anew, a branch) "
      "must be a device tensor written in place before the replay (train/graphed_step.h)";
  const auto [was, now] = std::mismatch(ops_.begin(), ops_.end(), ops.begin(), ops.end());
  if (was != ops_.end() && now != ops.end())
    throw std::runtime_error(what + "operator " + std::to_string(was - ops_.begin()) + " of " +
                             std::to_string(ops_.size()) + " was " + shortened(*was) +
                             " and is now " + shortened(*now) + why);
  if (ops.size() != ops_.size())
    throw std::runtime_error(what + "it calls " + std::to_string(ops.size()) +
                             " operators, the capture " + std::to_string(ops_.size()) + why);
}

}  // namespace coatnet::train
