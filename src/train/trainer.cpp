#include "train/trainer.h"

#include <ATen/ATen.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <memory>
#include <stdexcept>
#include <string>
#include <thread>

#include <sys/resource.h>

#include "checkpoint/checkpointer.h"
#include "cuda/device_memory.h"
#include "cuda/sync_check.h"
#include "dist/world.h"
#include "train/graphed_step.h"
#include "train/out_of_memory.h"
#include "train/phases.h"
#include "train/profile.h"
#include "train/report.h"
#include "train/run_parts.h"
#include "train/step.h"
#include "util/atomic_file.h"
#include "util/clock.h"
#include "util/keyed_random.h"

namespace coatnet::train {

namespace fs = std::filesystem;

namespace {

// Reads the skipped steps since the last read; logs them unless the precision skips steps as a
// matter of course (fp16's loss scaling does).
void settle_skipped(SkippedSteps& skips, const Precision& precision, util::Progress& progress,
                    int64_t done) {
  const int64_t window = skips.settle(precision);
  if (window > 0 && !precision.skips_steps_normally())
    progress.message("[train] " + std::to_string(window) + " step(s) up to step " +
                     std::to_string(done) + ": non-finite gradients, step skipped");
}

// Where a checkpoint saved after `done` steps lets the run continue.
checkpoint::ResumePoint resume_point(int64_t done, const data::SamplerState& sampler,
                                     const SkippedSteps& skips, const TrainSummary& summary) {
  checkpoint::ResumePoint p;
  p.step = done;
  p.epoch = sampler.epoch;
  p.samples_consumed = sampler.consumed;
  p.skipped_steps = skips.total();
  p.best_top1 = summary.best_top1;
  p.best_step = summary.best_step;
  return p;
}

// The model (and its EMA) on the validation set: records, log lines and the best so far.
void evaluate_and_record(RunParts& run, int64_t step, int64_t epoch, TrainSummary& summary,
                         MetricsLog& metrics, util::Progress& progress) {
  const Evaluation e = evaluate_run(run);
  metrics.write(eval_record(e.model, step, epoch, false));
  progress.message(eval_line(e.model, step, false));
  summary.final_top1 = e.model.top1;
  if (e.model.top1 > summary.best_top1) {
    summary.best_top1 = e.model.top1;
    summary.best_step = step;
  }
  if (e.ema) {
    metrics.write(eval_record(*e.ema, step, epoch, true));
    progress.message(eval_line(*e.ema, step, true));
    summary.final_top1_ema = e.ema->top1;
  }
}

// The run's figures from its timings, at the end.
void close_summary(TrainSummary& summary, const StepTimes& times, const LoopOptions& loop,
                   int64_t start_step, double wall_s) {
  const double train_s = std::max(times.total_time, 1e-9);
  summary.wall_s = wall_s;
  summary.images_per_s = (summary.steps - start_step) * loop.global_batch * loop.accum / train_s;
  summary.data_wait_share = times.total_data / train_s;
  summary.comm_wait_share = times.total_comm / train_s;
}

// The most memory any rank used in the window since the last log step: on a GPU the caching
// allocator's peak of allocated bytes (reset for the next window), and at least what a CUDA
// graph keeps for its replays (graph_bytes); on a CPU the process's peak resident set (since its
// start: Linux keeps no other). A collective: every rank logs alike.
MemoryFigures window_memory(const at::Device& device, const dist::World& world,
                            int64_t graph_bytes) {
  int64_t bytes = -1, total = -1;
  if (device.is_cuda()) {
    const cuda::DevicePeak p = cuda::take_device_peak(device);
    bytes = std::max(p.peak_bytes, graph_bytes);
    total = p.total_bytes;
  } else {
    rusage u{};
    if (getrusage(RUSAGE_SELF, &u) == 0) bytes = static_cast<int64_t>(u.ru_maxrss) * 1024;
  }
  const double gib = 1024.0 * 1024 * 1024;
  const int64_t most = world.max(bytes, "memory peak");
  return {most < 0 ? -1 : most / gib, total < 0 ? -1 : total / gib,
          device.is_cuda() ? "cuda_allocated" : "cpu_rss"};
}

// `work` (one step's data, forward, backward and update) under train.sync_check: an operation in
// it that makes the host wait for the GPU warns, or ends the run naming the step ("error").
template <typename Work>
auto sync_checked(const std::string& mode, int64_t step, Work&& work) -> decltype(work()) {
  const cuda::SyncCheck check(mode);
  try {
    return work();
  } catch (const c10::Error& e) {
    const std::string what = e.what_without_backtrace();
    if (mode != "error" || what.find("synchronizing CUDA operation") == std::string::npos) throw;
    throw std::runtime_error(
        "train.sync_check: step " + std::to_string(step + 1) + " made the host wait for the GPU (" +
        what + "); a training step should not, only log, evaluation and checkpoint steps. " +
        "Where, in c10's trace: " + e.what());
  }
}

// Fault injection for the test of train.sync_check: COATNET_FAULT_SYNC_STEP=N makes the step of
// index N (from 0, as COATNET_FAULT_OOM_STEP; step N + 1 in the logs) read a value back from the
// device, which waits for the GPU.
void maybe_read_back(int64_t step, const at::Device& device) {
  const char* s = std::getenv("COATNET_FAULT_SYNC_STEP");
  if (!s || std::atoll(s) != step) return;
  std::fprintf(stderr, "fault injection: step %lld reads a value back from the device\n",
               static_cast<long long>(step + 1));
  (void)at::ones({1}, at::TensorOptions().device(device)).item<float>();
}

// Fault injection for the test of the windows' timing: COATNET_FAULT_DEVICE_LAG_MS=N makes each
// log step's read-back wait N ms longer, as it does when a GPU is still running the window's
// steps that the host has long since enqueued (a CUDA graph's replays).
void maybe_lag_device() {
  const char* ms = std::getenv("COATNET_FAULT_DEVICE_LAG_MS");
  if (ms) std::this_thread::sleep_for(std::chrono::milliseconds(std::atoll(ms)));
}

}  // namespace

// COATNET_FAULT_STALL_AT: where in the step the rank stalls — "start" (the default: before
// its forward, so the others wait in the gradient all-reduce) or "boundary" (after the update,
// so the others wait in the step-boundary agreement).
void maybe_stall(int rank, int64_t step, const char* where) {
  const char* r = std::getenv("COATNET_FAULT_STALL_RANK");
  const char* s = std::getenv("COATNET_FAULT_STALL_STEP");
  const char* at = std::getenv("COATNET_FAULT_STALL_AT");
  if (!r || !s || std::atoi(r) != rank || std::atoll(s) != step) return;
  if (std::string(at ? at : "start") != where) return;
  std::fprintf(stderr, "[rank %d] fault injection: stalling at step %lld\n", rank,
               static_cast<long long>(step));
  for (;;) std::this_thread::sleep_for(std::chrono::seconds(1));
}

TrainSummary train(const config::Config& requested, dist::World& world) {
  const auto t_start = clock_type::now();
  const bool root = world.is_root();
  util::Progress progress(root, util::Progress::style(requested.get_string("train.progress")),
                          stdout, "train");

  // --- set-up: threads, device, comm, model, flat parameters, optimizer, EMA, data ---
  RunParts run(requested, world, progress);
  const LoopOptions& loop = run.loop;
  const TrainState state = run.state();

  // --- run directory, checkpoints, resume ---
  TrainSummary summary;
  summary.run_dir = run_directory(run.cfg, world);
  const std::string ckpt_root = checkpoint_root(run.cfg, summary.run_dir);
  const std::string config_text = run.cfg.dump();
  std::unique_ptr<checkpoint::Checkpointer> ckpt;
  if (loop.checkpoints || !run.cfg.get_string("train.resume").empty())
    ckpt = std::make_unique<checkpoint::Checkpointer>(
        checkpoint_options(run.cfg, ckpt_root, run.spec, loop, config_text), world, *run.comm,
        [&](const std::string& m) { progress.message(m); });
  const Resumed resumed = resume_run(ckpt.get(), run, ckpt_root, world, progress);
  const int64_t start_step = resumed.step();
  if (resumed) {
    summary.steps = start_step;
    summary.best_top1 = resumed.manifest->best_top1;
    summary.best_step = resumed.manifest->best_step;
  }
  const std::unique_ptr<MetricsLog> metrics =
      open_run_directory(root, summary.run_dir, config_text, static_cast<bool>(resumed));
  metrics->write(env_record(run.facts(world, start_step, resumed.from)));
  progress.message(run.banner(world, summary.run_dir));

  // --- the loop ---
  run.net->train();
  StepTimes times;
  SkippedSteps skips(run.device, resumed ? resumed.manifest->skipped_steps : 0, loop.max_bad_steps);
  at::Tensor grad_norm;
  ForwardBackward passes(*run.net, run.train_loader, run.buckets, run.gather, *run.precision, loop,
                         run.device, world.rank(), run.batch_prep_kernel, start_step * loop.accum);
  // train.cuda_graph: from here on this thread runs on the graph's stream, eager steps included.
  std::unique_ptr<GraphedStep> graphed;
  if (cuda_graph_on(run.cfg))
    graphed = std::make_unique<GraphedStep>(run, passes, skips, start_step);
  int64_t epoch = resumed ? resumed.manifest->epoch : 0;
  const StopSignals stop_signals;
  // Stochastic depth and dropout draw from a generator reseeded every step from (seed, step),
  // alike on every rank, for the whole global batch (model::GlobalBatchRows): a resumed run
  // draws the same masks without saving generator states, at any world size.
  const uint64_t step_key = key_of(static_cast<uint64_t>(run.cfg.get_int("train.seed")), 0x5eed);
  ProgressLine shown{start_step, loop.total_steps, epoch, loop.epochs, 0, 0, 0, 0};
  StepProfiler profiler(run.cfg.get_int("train.profile_start"),
                        run.cfg.get_int("train.profile_steps"), run.device.is_cuda(),
                        root ? summary.run_dir + "/profile" : "",
                        [&](const std::string& m) { progress.message(m); });
  // One step's data, forward, backward and update: replayed as a CUDA graph, or eager.
  auto step_work = [&](int64_t step, double lr) -> ForwardBackward::Waits {
    maybe_read_back(step, run.device);
    if (graphed && graphed->takes(step)) {
      const ForwardBackward::Waits w = graphed->run(step, lr, ckpt.get());
      grad_norm = graphed->grad_norm();
      return w;
    }
    run.buckets.zero();
    const ForwardBackward::Waits w = passes.run(step);
    grad_norm = update_weights(run, skips, [&](const at::Tensor& found_inf) {
      if (ckpt) ckpt->before_update();  // a save's snapshot must be taken before weights change
      run.optimizer.step(lr, found_inf);
    });
    return w;
  };
  // train.sync_check: c10's sync debug mode, on a GPU only (a CPU has nothing to wait for).
  const std::string sync_check =
      run.device.is_cuda() ? run.cfg.get_string("train.sync_check") : "off";
  times.start = clock_type::now();  // the set-up above is not training
  for (int64_t step = start_step; step < loop.total_steps; ++step) {
    profiler.before_step(step);
    const auto t_step = clock_type::now();
    run.comm->set_step(step);
    world.set_step(step);
    maybe_stall(world.rank(), step);
    maybe_fail_allocation(world.rank(), step);
    at::manual_seed(key_of(step_key, static_cast<uint64_t>(step)));
    const double lr = lr_at(loop.schedule, step);
    // train.sync_check from the run's second step (the first settles lazy state: cuDNN's
    // search, constants copied to the device), not at a CUDA graph's capture (set-up too: it
    // drains the stream and returns the eager steps' cached memory first), and not while a
    // save's copy to the host runs (the check is the process's, and that copy waits for the GPU
    // by design).
    const bool checked =
        step > start_step && !(graphed && graphed->captures(step)) && !(ckpt && ckpt->pending());
    const ForwardBackward::Waits waits =
        sync_checked(checked ? sync_check : "off", step, [&] { return step_work(step, lr); });
    epoch = passes.epoch;
    run.gather.start();  // waited for before the next forward, evaluation or save
    times.add(seconds_since(t_step), waits.data, waits.comm,
              run.part.sharded() ? waits.gather : -1);
    profiler.after_step(step);

    const int64_t done = step + 1;
    shown.step = done;  // the live bar moves every step; figures change at log steps
    shown.epoch = epoch;
    shown.lr = lr;
    if (loop.log_at(done)) {
      maybe_lag_device();
      const ForwardBackward::Window w = passes.take_window(*run.comm, times.steps);
      settle_skipped(skips, *run.precision, progress, done);
      TrainFigures fig;
      fig.step = done;
      fig.epoch = epoch;
      fig.skipped_steps = skips.total();
      fig.loss = w.loss;
      fig.lr = lr;
      fig.grad_norm = grad_norm.item<double>();
      times.end_window();  // the read-backs above waited for the window's device work
      fig.data_hash = w.data_hash;
      fig.images_per_s = times.steps * loop.global_batch * loop.accum / std::max(times.time, 1e-9);
      fig.elapsed_s = seconds_since(t_start);
      fig.precision_state = run.precision->state();
      fig.memory = window_memory(run.device, world, graphed ? graphed->held_bytes() : -1);
      summary.peak_memory_gib = std::max(summary.peak_memory_gib, fig.memory.peak_gib);
      summary.device_memory_gib = fig.memory.device_gib;
      metrics->write(train_record(fig, times));
      shown.memory_gib = fig.memory.peak_gib;
      shown.loss = fig.loss;
      shown.images_per_s = fig.images_per_s;
      shown.eta_s = (loop.total_steps - done) * times.time / times.steps;
      times.close_window();
    }
    show_progress(progress, shown, loop.log_at(done));
    if (loop.eval_at(done) && run.val_loader) {
      run.gather.wait();
      const auto t_eval = clock_type::now();
      evaluate_and_record(run, done, epoch, summary, *metrics, progress);
      times.exclude(seconds_since(t_eval));
    }
    summary.steps = done;
    if (ckpt) ckpt->poll();
    // Every rank sees the same decision: a stop signal on any rank stops all of them here.
    maybe_stall(world.rank(), step, "boundary");
    const bool stop = world.max(stop_signals.received(), "stop-signal agreement") != 0;
    if (loop.save_at(done, stop)) {
      run.gather.wait();
      settle_skipped(skips, *run.precision, progress, done);
      const auto t_save = clock_type::now();
      ckpt->save(resume_point(done, run.train_loader.state(), skips, summary), state.collect());
      times.exclude(seconds_since(t_save));
    }
    if (stop) {
      summary.stopped_by_signal = true;
      progress.message("[train] stop signal: stopping after step " + std::to_string(done) +
                       (loop.checkpoints ? ", checkpoint saved; resume with --resume auto" : ""));
      break;
    }
  }
  run.gather.wait();
  if (times.steps > 0) {  // the steps after the last log step, once their device work is done
    if (grad_norm.defined()) (void)grad_norm.item<double>();
    times.end_window();
    times.close_window();
  }
  graphed.reset();  // the graph's memory back, its stream no longer current
  if (ckpt) {
    ckpt->finish();
    summary.checkpoint_stall_s = ckpt->stall_s();
  }

  // --- the end: final weights, summary ---
  if (!summary.stopped_by_signal) save_final_weights(run, summary.run_dir, root);
  run.comm->barrier("end of training");
  run.sync_bn.reset();
  run.bn_gelu_se_mean.reset();
  run.dw_conv.reset();
  run.bn_gelu.reset();
  run.pointwise_gemm.reset();
  run.se_fold.reset();
  run.bn_fold.reset();
  run.attention.reset();
  close_summary(summary, times, loop, start_step, seconds_since(t_start));
  const json::Value s = summary_record(summary, run.ema != nullptr, resumed.from);
  metrics->write(s);
  if (root)
    util::write_text_atomically((fs::path(summary.run_dir) / "summary.json").string(),
                                s.dump(2) + "\n");
  return summary;
}

}  // namespace coatnet::train
