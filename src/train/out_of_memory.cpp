#include "train/out_of_memory.h"

#include <c10/util/Exception.h>

#include <cstdlib>
#include <sstream>

#include "train/setup.h"

namespace coatnet::train {

bool is_out_of_memory(const std::exception& e) {
  if (dynamic_cast<const c10::OutOfMemoryError*>(&e)) return true;
  // The CPU allocator's failure is a plain c10::Error (alloc_cpu.cpp: "DefaultCPUAllocator:
  // can't allocate memory: you tried to allocate N bytes").
  const std::string what = e.what();
  return dynamic_cast<const c10::Error*>(&e) &&
         (what.find("can't allocate memory") != std::string::npos ||
          what.find("not enough memory") != std::string::npos);
}

std::string out_of_memory_hint(const config::Config& cfg, const std::string& config_path,
                               int world_size, bool on_gpu) {
  const int64_t batch = cfg.get_int("data.batch_size");
  const int64_t accum = cfg.get_int("optim.accum_steps");
  const std::string requested = cfg.get_string("precision.backend");
  const std::string precision =
      resolved_for(cfg, at::Device(on_gpu ? at::kCUDA : at::kCPU)).get_string("precision.backend");
  std::ostringstream o;
  o << "out of memory on the " << (on_gpu ? "GPU" : "CPU")
    << ": a step of data.batch_size = " << batch << " (" << batch / world_size
    << " images per rank at " << world_size << (world_size == 1 ? " rank" : " ranks")
    << ", optim.accum_steps = " << accum
    << "), model.image_size = " << cfg.get_int("model.image_size")
    << ", precision.backend = " << requested << (requested == "auto" ? " (" + precision + ")" : "")
    << " does not fit this rank's memory.";
  o << "\n  hint: what to change, the recipe kept:";
  if (precision == "fp32")
    o << "\n    --set precision.backend=bf16 (fp16 where the GPU has no bf16) halves the "
         "activations";
  // 1/f of the images per micro-step and f times the micro-steps, f the smallest factor of the
  // images per rank: the optimizer sees the same batch, still split evenly over the ranks.
  const int64_t per_rank = batch / world_size;
  int64_t f = 2;
  while (f <= per_rank && per_rank % f != 0) ++f;
  if (f <= per_rank)
    o << "\n    --set data.batch_size=" << batch / f << " --set optim.accum_steps=" << accum * f
      << ": the same " << batch * accum << " images per optimizer step, in " << accum * f
      << " micro-steps";
  if (world_size > 1 && cfg.get_string("optim.zero") == "0")  // auto is 1 at several ranks
    o << "\n    --set optim.zero=1 splits the optimizer state and the EMA over the ranks";
  o << "\n    coatnet info" << (config_path.empty() ? "" : " --config " + config_path)
    << " --batch " << batch << " --world-size " << world_size << " --precision "
    << (precision == "fp32" ? "bf16" : precision)
    << " predicts the memory per rank (add the run's --set options)";
  if (cfg.get_bool("checkpoint.enabled"))
    o << "\n  Checkpoints committed before this step are intact: --resume auto continues from "
         "the newest.";
  return o.str();
}

std::string out_of_memory_message(const std::exception& e, const config::Config& cfg,
                                  const std::string& config_path, int world_size) {
  if (!is_out_of_memory(e)) return "";
  const auto* c10_error = dynamic_cast<const c10::Error*>(&e);
  const std::string what = c10_error ? c10_error->what_without_backtrace() : e.what();
  const bool on_gpu = what.find("CUDA out of memory") != std::string::npos;
  return what + "\n" + out_of_memory_hint(cfg, config_path, world_size, on_gpu);
}

void maybe_fail_allocation(int rank, int64_t step) {
  const char* s = std::getenv("COATNET_FAULT_OOM_STEP");
  const char* r = std::getenv("COATNET_FAULT_OOM_RANK");
  if (!s || std::atoll(s) != step || (r && std::atoi(r) != rank)) return;
  // The type and the opening words of the CUDA caching allocator's error.
  TORCH_CHECK_WITH(OutOfMemoryError, false,
                   "CUDA out of memory. Tried to allocate 2.00 GiB (fault injection at step ", step,
                   ")");
}

}  // namespace coatnet::train
