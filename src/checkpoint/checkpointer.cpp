#include "checkpoint/checkpointer.h"

#include <ATen/ATen.h>
#include <torch/nn/module.h>
#include <xxhash.h>

#include <chrono>
#include <condition_variable>
#include <csignal>
#include <cstdlib>
#include <ctime>
#include <filesystem>
#include <mutex>

#include "checkpoint/shard_io.h"
#include "checkpoint/store.h"
#include "dist/comm.h"
#include "dist/world.h"
#include "plugin/registry.h"
#include "util/atomic_file.h"
#include "util/clock.h"

namespace coatnet::checkpoint {

namespace fs = std::filesystem;

namespace {

std::string utc_now() {
  char buf[32];
  std::time_t now = std::time(nullptr);
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", std::gmtime(&now));
  return buf;
}

std::string shape_text(const std::vector<int64_t>& s) {
  std::string out = "[";
  for (size_t i = 0; i < s.size(); ++i) out += (i ? ", " : "") + std::to_string(s[i]);
  return out + "]";
}

// Named buffers in registration order; `floating_only` gives the EMA's subset.
std::vector<std::pair<std::string, at::Tensor>> named_buffers(torch::nn::Module& net,
                                                              bool floating_only) {
  std::vector<std::pair<std::string, at::Tensor>> out;
  for (const auto& item : net.named_buffers(/*recurse=*/true))
    if (!floating_only || item.value().is_floating_point())
      out.emplace_back(item.key(), item.value());
  return out;
}

std::vector<LayoutEntry> buffer_layout(
    const std::vector<std::pair<std::string, at::Tensor>>& bufs) {
  std::vector<LayoutEntry> out;
  int64_t offset = 0;
  for (const auto& [name, t] : bufs) {
    out.push_back({name, offset, t.sizes().vec()});
    offset += t.numel();
  }
  return out;
}

at::Tensor concat_f64(const std::vector<at::Tensor>& ts) {
  std::vector<at::Tensor> flat;
  for (const auto& t : ts) flat.push_back(t.detach().to(at::kCPU, at::kDouble).reshape({-1}));
  return flat.empty() ? at::zeros({0}, at::kDouble) : at::cat(flat);
}

// The checkpoint's layout of `tensor` must be the model's: same names and shapes, in order.
// Offsets may differ (a checkpoint written before parameters were aligned in the flat buffer):
// place_flat() moves each entry to the model's.
void check_layout(const Manifest& m, const std::string& tensor,
                  const std::vector<LayoutEntry>& model, const std::string& dir) {
  auto it = m.layout.find(tensor);
  if (it == m.layout.end()) throw ManifestError(dir + ": no layout for '" + tensor + "'");
  const auto& saved = it->second;
  const std::string hint =
      ": the checkpoint was saved from another model (model.* differs; --init-from loads "
      "weights into a different model)";
  for (size_t i = 0; i < std::max(saved.size(), model.size()); ++i) {
    if (i >= saved.size())
      throw ManifestError(dir + ": the model has '" + model[i].name + "', the checkpoint does not" +
                          hint);
    if (i >= model.size())
      throw ManifestError(dir + ": the checkpoint has '" + saved[i].name + "', the model does not" +
                          hint);
    if (saved[i].name != model[i].name || saved[i].shape != model[i].shape)
      throw ManifestError(dir + ": checkpoint " + tensor + " '" + saved[i].name + "' " +
                          shape_text(saved[i].shape) + " where the model has '" + model[i].name +
                          "' " + shape_text(model[i].shape) + hint);
  }
}

void set_buffers(const std::vector<std::pair<std::string, at::Tensor>>& bufs,
                 const at::Tensor& f64) {
  at::NoGradGuard no_grad;
  int64_t total = 0;
  for (const auto& [name, t] : bufs) total += t.numel();
  if (f64.numel() != total)
    throw ManifestError("the checkpoint holds " + std::to_string(f64.numel()) +
                        " buffer elements per rank, the model has " + std::to_string(total));
  int64_t offset = 0;
  for (const auto& [name, t] : bufs) {
    at::Tensor src = f64.narrow(0, offset, t.numel()).view(t.sizes());
    at::Tensor dst = t;
    dst.copy_(src);
    offset += t.numel();
  }
}

// Row `row` of a per-rank (world_size × n) float64 tensor.
at::Tensor read_row(const std::string& dir, const Manifest& m, const std::string& name, int row) {
  const TensorSpec* t = m.tensor(name);
  if (!t) throw ManifestError(dir + ": no tensor '" + name + "'");
  if (t->numel % m.world_size != 0)
    throw ManifestError(dir + ": tensor '" + name + "' of " + std::to_string(t->numel) +
                        " elements is not one row per rank of world_size " +
                        std::to_string(m.world_size));
  const int64_t n = t->numel / m.world_size;
  at::Tensor out = at::empty({n}, at::kDouble);
  read_tensor(dir, m, name, row * n, (row + 1) * n, out.data_ptr());
  return out;
}

at::Tensor mean_of_rows(const std::string& dir, const Manifest& m, const std::string& name) {
  at::Tensor sum = read_row(dir, m, name, 0);
  for (int r = 1; r < m.world_size; ++r) sum += read_row(dir, m, name, r);
  return sum / static_cast<double>(m.world_size);
}

// Fault injection for the tests, each off unless both of its variables are set:
// COATNET_FAULT_KILL_SAVE_RANK/_STEP: that rank dies half-way through writing its shard at
// that step; COATNET_FAULT_HOLD_SAVE_RANK/_STEP: it holds for 5 s before writing it, so that
// a test can cut its host off while the checkpoint is being saved and committed.
bool save_fault(const char* what, int rank, int64_t step) {
  const std::string var = std::string("COATNET_FAULT_") + what + "_SAVE_";
  const char* r = std::getenv((var + "RANK").c_str());
  const char* s = std::getenv((var + "STEP").c_str());
  return r && s && std::atoi(r) == rank && std::atoll(s) == step;
}

}  // namespace

struct Checkpointer::InFlight {
  std::string dir;
  Manifest manifest;                  // everything but the shards
  std::vector<at::Tensor> host;       // the snapshot (keeps the segment data alive)
  std::vector<SegmentData> segments;  // this rank's part
  // Slices of the live flat tensors still to be copied into `host` (segment index, slice).
  std::vector<std::pair<size_t, at::Tensor>> to_copy;
  std::mutex mutex;
  std::condition_variable copied_cv;
  bool copied = false;
  std::thread thread;
  std::atomic<bool> done{false};
  ShardFile written;  // empty file name: this rank wrote nothing
  std::string error;

  // The copy to host memory. Run by the writer thread while the trainer's next forward and
  // backward go on (they read the parameters, never write them); before_update() waits for it.
  // A synchronous save of CPU tensors writes straight from them (nothing changes meanwhile).
  bool zero_copy = false;
  void copy() {
    at::NoGradGuard no_grad;
    for (auto& [i, slice] : to_copy) {
      at::Tensor h = !slice.is_cpu()                      ? slice.to(at::kCPU)
                     : zero_copy && slice.is_contiguous() ? slice
                                                          : slice.clone();
      host.push_back(h);
      segments[i].data = h.data_ptr();
    }
    to_copy.clear();
    std::lock_guard<std::mutex> lock(mutex);
    copied = true;
    copied_cv.notify_all();
  }

  void wait_copied() {
    std::unique_lock<std::mutex> lock(mutex);
    copied_cv.wait(lock, [&] { return copied; });
  }

  void write(int rank, int world) {
    try {
      copy();
      if (!segments.empty()) {
        char name[64];
        std::snprintf(name, sizeof name, "shard-%05d-of-%05d.h5", rank, world);
        if (save_fault("HOLD", rank, manifest.step)) {
          std::fprintf(stderr, "[rank %d] fault injection: holding before writing %s/%s\n", rank,
                       dir.c_str(), name);
          std::this_thread::sleep_for(std::chrono::seconds(5));
        }
        if (save_fault("KILL", rank, manifest.step)) {
          write_shard(dir, name, {segments.front()});
          std::fprintf(stderr, "[rank %d] fault injection: killed while writing %s/%s\n", rank,
                       dir.c_str(), name);
          std::raise(SIGKILL);
        }
        written = write_shard(dir, name, segments);
      }
    } catch (const std::exception& e) {
      error = e.what();
    }
    done = true;
  }
};

namespace {
// Whether every model entry sits at the offset the checkpoint saved it at (the tensors may still
// differ in length: end padding for another world size).
bool same_offsets(const std::vector<LayoutEntry>& saved, const std::vector<LayoutEntry>& model) {
  for (size_t i = 0; i < model.size(); ++i)
    if (saved[i].offset != model[i].offset) return false;
  return true;
}
}  // namespace

void place_flat(const at::Tensor& saved, const std::vector<LayoutEntry>& saved_layout,
                at::Tensor dst, const std::vector<LayoutEntry>& model_layout) {
  if (saved.numel() == dst.numel() && same_offsets(saved_layout, model_layout)) {
    dst.copy_(saved);
    return;
  }
  for (size_t i = 0; i < model_layout.size(); ++i) {
    const int64_t n = model_layout[i].numel();
    if (saved_layout[i].offset + n > saved.numel())
      throw ManifestError("checkpoint parameter '" + saved_layout[i].name + "' at offset " +
                          std::to_string(saved_layout[i].offset) + " runs past the saved " +
                          std::to_string(saved.numel()) + " elements");
    dst.narrow(0, model_layout[i].offset, n).copy_(saved.narrow(0, saved_layout[i].offset, n));
  }
}

void read_flat_range(const std::string& dir, const Manifest& m, const std::string& name,
                     at::Tensor dst, int64_t begin, const std::vector<LayoutEntry>& model_layout) {
  const std::vector<LayoutEntry>& saved_layout = m.layout.at("params");
  const int64_t n = m.tensor(name)->numel, len = dst.numel();
  at::Tensor host = at::zeros({len}, at::kFloat);  // the padding stays zero
  float* out = host.data_ptr<float>();
  if (same_offsets(saved_layout, model_layout)) {  // one read; the saved tensor may be shorter or
                                                   // longer (padding for another W)
    const int64_t end = std::min(begin + len, n);
    if (end > begin) read_tensor(dir, m, name, begin, end, out);
  } else {  // entry by entry, each from its saved offset
    for (size_t i = 0; i < model_layout.size(); ++i) {
      const int64_t at = model_layout[i].offset, count = model_layout[i].numel();
      const int64_t lo = std::max(at, begin), hi = std::min(at + count, begin + len);
      if (hi <= lo) continue;
      const int64_t from = saved_layout[i].offset + (lo - at);
      if (from + (hi - lo) > n)
        throw ManifestError(dir + ": checkpoint parameter '" + saved_layout[i].name +
                            "' at offset " + std::to_string(saved_layout[i].offset) +
                            " runs past the saved " + std::to_string(n) + " elements");
      read_tensor(dir, m, name, from, from + (hi - lo), out + (lo - begin));
    }
  }
  dst.copy_(host);
}

Checkpointer::Checkpointer(CheckpointOptions options, dist::World& world, dist::Comm& comm, Log log)
    : opt_(std::move(options)), world_(world), comm_(comm), log_(std::move(log)) {
  backend_ = plugin::create<Backend>("checkpoint", opt_.backend, nullptr, "checkpoint.backend");
}

void Checkpointer::check_backend(const std::string& name) {
  plugin::create<Backend>("checkpoint", name, nullptr, "checkpoint.backend");
}

Checkpointer::~Checkpointer() {
  if (inflight_ && inflight_->thread.joinable()) inflight_->thread.join();
}

void Checkpointer::save(const ResumePoint& at, const State& state) {
  const auto t0 = clock_type::now();
  if (inflight_) {  // a new save waits for the previous one
    inflight_->thread.join();
    commit_inflight();
  }
  const int rank = world_.rank(), world = world_.size();
  auto f = std::make_unique<InFlight>();
  f->dir = (fs::path(opt_.root) / step_dir_name(at.step)).string();
  if (rank == 0) {
    std::error_code ec;
    fs::remove_all(f->dir, ec);  // an interrupted save of this step, or a stale one
    fs::create_directories(f->dir);
    util::write_text_atomically((fs::path(f->dir) / kConfigName).string(), opt_.config_text);
  }
  world_.barrier();

  Manifest& m = f->manifest;
  m.step = at.step;
  m.epoch = at.epoch;
  m.samples_consumed = at.samples_consumed;
  m.skipped_steps = at.skipped_steps;
  m.best_top1 = at.best_top1;
  m.best_step = at.best_step;
  m.optimizer_steps = state.optimizer_steps;
  m.global_batch = opt_.global_batch;
  m.accum_steps = opt_.accum_steps;
  m.world_size = world;
  m.seed = opt_.seed;
  m.backend = backend_->name();
  m.model = opt_.model;
  m.config_hash = opt_.config_hash;
  m.created = utc_now();
  m.precision = state.precision;
  m.precision_state = state.precision_state;

  // The snapshot: this rank's range of each flat tensor, to be copied to host memory (by the
  // writer thread, before the next optimizer update: see before_update()).
  {
    at::NoGradGuard no_grad;
    for (const FlatTensor& t : state.flat) {
      m.tensors.push_back({t.name, DType::F32, t.numel()});
      // A tensor held in part is written by its holders, with no gather (ZeRO-1).
      const auto [b, e] = t.partial()
                              ? std::pair<int64_t, int64_t>{t.begin, t.begin + t.values.numel()}
                              : backend_->range(t.values.numel(), rank, world);
      if (e <= b) continue;
      const int64_t from = t.partial() ? 0 : b;
      f->to_copy.emplace_back(f->segments.size(), t.values.detach().narrow(0, from, e - b));
      f->segments.push_back({{t.name, b, e}, DType::F32, nullptr});
    }
    m.layout["params"] = state.layout;
    // The device the collectives take (nccl: CUDA tensors only).
    const at::Device device =
        state.flat.empty() ? at::Device(at::kCPU) : state.flat.front().values.device();
    // Every rank's own tensors (BatchNorm statistics differ between ranks unless SyncBN): rows
    // of a (world × n) float64 tensor, split like the others.
    for (const RankTensors& r : state.per_rank) {
      m.layout[r.name] = buffer_layout(r.tensors);
      std::vector<at::Tensor> list;
      for (const auto& [n, t] : r.tensors) list.push_back(t);
      const at::Tensor mine = concat_f64(list);
      const std::string& name = r.name;
      const int64_t n = mine.numel() * world;
      m.tensors.push_back({name, DType::F64, n});
      if (n == 0) continue;
      at::Tensor all = comm_.allgather(mine.to(device), "checkpoint of " + name);
      const auto [b, e] = backend_->range(n, rank, world);
      if (e <= b) continue;
      at::Tensor host = all.reshape({-1}).narrow(0, b, e - b).to(at::kCPU).clone();
      f->host.push_back(host);
      f->segments.push_back({{name, b, e}, DType::F64, host.data_ptr()});
    }
  }

  inflight_ = std::move(f);
  if (opt_.async) {
    InFlight* p = inflight_.get();
    inflight_->thread = std::thread([p, rank, world] { p->write(rank, world); });
  } else {
    inflight_->zero_copy = true;
    inflight_->write(rank, world);
    commit_inflight();
  }
  stall_s_ += seconds_since(t0);
}

void Checkpointer::before_update() {
  if (!inflight_) return;
  const auto t0 = clock_type::now();
  inflight_->wait_copied();
  stall_s_ += seconds_since(t0);
}

void Checkpointer::poll() {
  if (!inflight_) return;
  if (world_.sum(inflight_->done ? 1 : 0) < world_.size()) return;
  inflight_->thread.join();
  commit_inflight();
}

void Checkpointer::finish() {
  if (!inflight_) return;
  if (inflight_->thread.joinable()) inflight_->thread.join();
  commit_inflight();
}

void Checkpointer::commit_inflight() {
  std::unique_ptr<InFlight> f = std::move(inflight_);
  const std::string mine = f->error.empty()
                               ? (f->written.file.empty() ? "" : shard_to_yaml(f->written))
                               : "ERR\t" + f->error;
  const std::vector<std::string> all = world_.gather_strings(mine);
  std::string error;
  for (size_t r = 0; r < all.size(); ++r)
    if (all[r].rfind("ERR\t", 0) == 0 && error.empty())
      error = "[rank " + std::to_string(r) + "] " + all[r].substr(4);
  if (error.empty() && world_.rank() == 0) {
    try {
      for (const auto& s : all)
        if (!s.empty()) f->manifest.shards.push_back(shard_from_yaml(s, f->dir));
      commit(opt_.root, f->dir, f->manifest);
    } catch (const std::exception& e) {
      error = std::string("[rank 0] ") + e.what();
    }
  }
  // Everyone learns whether rank 0's commit worked.
  std::vector<std::string> verdict = world_.gather_strings(world_.rank() == 0 ? error : "");
  if (error.empty()) error = verdict.front();
  if (!error.empty()) {
    if (world_.rank() == 0) {
      std::error_code ec;
      fs::remove_all(f->dir, ec);  // never leaves something that looks like a checkpoint
    }
    const std::string msg = "checkpoint save of step " + std::to_string(f->manifest.step) +
                            " failed: " + error + "; the previous checkpoint is intact";
    if (opt_.stop_on_error)
      throw std::runtime_error(msg +
                               " (checkpoint.on_error = stop; set it to continue to train on)");
    log_("[checkpoint] warning: " + msg + "; training goes on (checkpoint.on_error = continue)");
    return;
  }
  if (world_.rank() == 0) {
    log_("[checkpoint] saved step " + std::to_string(f->manifest.step) + " to " + f->dir);
    for (const auto& gone : prune(opt_.root, opt_.keep_last, opt_.keep_every))
      log_("[checkpoint] removed " + gone + " (checkpoint.keep_last/keep_every)");
  }
}

std::string Checkpointer::problem_everywhere(const std::string& dir) {
  const auto all = world_.gather_strings(check_checkpoint(dir, world_.rank(), world_.size()));
  for (const auto& p : all)
    if (!p.empty()) return p;
  return "";
}

std::optional<std::string> Checkpointer::first_valid(const std::string& root) {
  std::vector<std::string> skipped;
  const std::string dir =
      newest_valid(root, &skipped, [this](const std::string& d) { return problem_everywhere(d); });
  for (const auto& s : skipped) log_("[resume] skipping " + s);
  if (dir.empty()) return std::nullopt;
  return dir;
}

std::optional<std::string> Checkpointer::find(const std::string& what) {
  if (what == "auto") return first_valid(opt_.root);
  if (is_step_dir(what)) {
    const std::string problem = problem_everywhere(what);
    if (!problem.empty())
      throw std::runtime_error("--resume " + what + ": " + problem +
                               " (--resume auto takes the newest valid checkpoint instead)");
    return what;
  }
  auto found = first_valid(what);
  if (!found)
    throw std::runtime_error("--resume " + what +
                             ": no valid checkpoint there (`coatnet ckpt list " + what +
                             "` shows what is there)");
  return found;
}

Manifest Checkpointer::load(const std::string& dir, State& state) {
  Manifest m = read_manifest(dir);
  // The model must be the one that was saved: layouts first, before anything is changed.
  check_layout(m, "params", state.layout, dir);
  for (const RankTensors& r : state.per_rank)
    if (m.tensor(r.name) || !r.if_missing) check_layout(m, r.name, buffer_layout(r.tensors), dir);

  at::NoGradGuard no_grad;
  const int rank = world_.rank(), world = world_.size();
  std::vector<const IfMissing*> missing;  // run once everything present is loaded
  for (FlatTensor& t : state.flat) {
    const TensorSpec* spec = m.tensor(t.name);
    if (!spec) {
      if (!t.if_missing) throw ManifestError(dir + ": no tensor '" + t.name + "'");
      missing.push_back(&t.if_missing);
      continue;
    }
    if (t.partial()) {
      read_flat_range(dir, m, t.name, t.values, t.begin, state.layout);
      continue;
    }
    // This rank reads its part at the current world size; the parts are all-gathered.
    const int64_t n = spec->numel;
    const int64_t per = (n + world - 1) / world;
    const auto [b, e] = even_range(n, rank, world);
    at::Tensor part = at::zeros({per}, at::kFloat);
    read_tensor(dir, m, t.name, b, e, part.data_ptr());
    at::Tensor gathered =
        comm_.allgather(part.to(t.values.device()), "checkpoint load of " + t.name);
    at::Tensor saved = at::empty({n}, gathered.options());
    for (int r = 0; r < world; ++r) {
      const auto [rb, re] = even_range(n, r, world);
      saved.narrow(0, rb, re - rb).copy_(gathered[r].narrow(0, 0, re - rb));
    }
    place_flat(saved, m.layout.at("params"), t.values, state.layout);
  }
  // This rank's row: its own at the same world size (so a resume is exact), rank r mod W's at
  // another.
  const int row = rank % m.world_size;
  for (RankTensors& r : state.per_rank) {
    if (!m.tensor(r.name) && r.if_missing) {
      missing.push_back(&r.if_missing);
      continue;
    }
    set_buffers(r.tensors, read_row(dir, m, r.name, row));
  }
  for (const IfMissing* f : missing) {
    const std::string note = (*f)();
    if (!note.empty()) log_("[resume] " + note);
  }
  state.optimizer_steps = m.optimizer_steps;
  state.precision = m.precision;
  state.precision_state = m.precision_state;
  return m;
}

void load_model_weights(const std::string& dir, torch::nn::Module& net, bool ema) {
  Manifest m = read_manifest(dir);
  const std::string hint =
      " (the checkpoint was saved from another model; build it from the checkpoint's config.yaml)";
  std::map<std::string, at::Tensor> params;
  for (const auto& item : net.named_parameters(/*recurse=*/true))
    if (item.value().requires_grad()) params.emplace(item.key(), item.value());
  const auto layout = m.layout.find("params");
  if (layout == m.layout.end()) throw ManifestError(dir + ": no layout for 'params'");
  for (const LayoutEntry& e : layout->second) {
    auto it = params.find(e.name);
    if (it == params.end() || it->second.sizes().vec() != e.shape)
      throw ManifestError(dir + ": checkpoint parameter '" + e.name + "' " + shape_text(e.shape) +
                          (it == params.end()
                               ? " is not in the model"
                               : " is " + shape_text(it->second.sizes().vec()) + " in the model") +
                          hint);
  }
  if (layout->second.size() != params.size())
    throw ManifestError(dir + ": the model has " + std::to_string(params.size()) +
                        " trainable parameters, the checkpoint " +
                        std::to_string(layout->second.size()) + hint);
  const auto bufs = named_buffers(net, false);
  check_layout(m, "buffers", buffer_layout(bufs), dir);
  const std::string name = ema ? "ema" : "params";
  if (!m.tensor(name))
    throw ManifestError(dir + (ema ? ": the checkpoint has no EMA weights (train.ema_decay was 0)"
                                   : ": no tensor 'params'"));
  at::NoGradGuard no_grad;
  const int64_t n = m.tensor(name)->numel;
  at::Tensor values = at::empty({n}, at::kFloat);
  read_tensor(dir, m, name, 0, n, values.data_ptr());
  for (const LayoutEntry& e : layout->second) {
    at::Tensor dst = params.at(e.name);
    dst.copy_(values.narrow(0, e.offset, e.numel()).view(e.shape));
  }
  // The ranks' BatchNorm statistics averaged, as evaluation uses them.
  set_buffers(bufs, mean_of_rows(dir, m, "buffers"));
  if (ema) {
    const auto ema_named = named_buffers(net, true);
    check_layout(m, "ema_buffers", buffer_layout(ema_named), dir);
    set_buffers(ema_named, mean_of_rows(dir, m, "ema_buffers"));
  }
}

std::string recipe_hash(const std::map<std::string, std::string>& recipe) {
  std::string joined;
  for (const auto& [k, v] : recipe) joined += k + "=" + v + "\n";
  return hex64(XXH3_64bits(joined.data(), joined.size()));
}

}  // namespace coatnet::checkpoint
