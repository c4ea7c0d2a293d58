#include "train/setup.h"

#include "cuda/batch_prep.h"
#include "cuda/bn_gelu.h"
#include "cuda/dw_conv.h"

#include <c10/core/impl/DeviceGuardImplInterface.h>
#include <torch/cuda.h>

#include <algorithm>
#include <stdexcept>
#include <string>

#include "config/config.h"
#include "data/dataset.h"
#include "dist/world.h"
#include "model/variants.h"
#include "util/text.h"

namespace coatnet::train {

data::LoaderOptions loader_options(const config::Config& cfg, const dist::World& world,
                                   bool train_split, int threads, const model::ModelSpec& spec,
                                   const at::Device& device) {
  data::LoaderOptions o;
  const char* key = train_split ? "data.train" : "data.val";
  o.files = data::expand_globs(cfg.get_strings(key));
  int64_t global = cfg.get_int("data.batch_size");
  const int w = world.size();
  if (train_split && global % w != 0)
    throw std::invalid_argument("data.batch_size = " + std::to_string(global) +
                                " is not divisible by the world size " + std::to_string(w) +
                                ": each rank takes an equal slice; choose a multiple of " +
                                std::to_string(w));
  if (!train_split) global = (global + w - 1) / w * w;  // evaluation pads, so any size works
  o.sampler.global_batch = global;
  o.sampler.rank = world.rank();
  o.sampler.world = w;
  o.sampler.seed = static_cast<uint64_t>(cfg.get_int("train.seed"));
  o.sampler.shuffle = train_split;
  o.sampler.drop_last = train_split;
  o.transform.size = spec.image_size;
  o.transform.channels = spec.in_chans;
  o.transform.train = train_split;
  o.transform.scale_min = cfg.get_float("aug.scale_min");
  o.transform.hflip = cfg.get_float("aug.hflip");
  o.transform.crop_pct = cfg.get_float("data.crop_pct");
  o.transform.randaugment_n = static_cast<int>(cfg.get_int("aug.randaugment_n"));
  o.transform.randaugment_m = static_cast<int>(cfg.get_int("aug.randaugment_m"));
  o.transform.seed = o.sampler.seed;
  o.threads = threads;
  o.prefetch = static_cast<int>(cfg.get_int("data.prefetch"));
  o.mean = cfg.get_floats("data.mean");
  o.std = cfg.get_floats("data.std");
  o.channels_last = channels_last(cfg, device);
  const std::string dtype = cfg.get_string("data.dtype");
  o.normalize = dtype == "float32" || (dtype == "auto" && !device.is_cuda());
  o.pin_memory = device.is_cuda() && cfg.get_bool("data.pin_memory");
  o.skip_corrupt = cfg.get_string("data.on_corrupt") == "skip";
  return o;
}

void check_dataset(const data::Loader& loader, const model::ModelSpec& spec,
                   const config::Config& cfg, const char* key) {
  const data::ShardMeta& m = loader.dataset().meta();
  if (m.num_classes > spec.num_classes)
    throw std::invalid_argument(
        std::string(key) + " has " + std::to_string(m.num_classes) +
        " classes but model.num_classes = " + std::to_string(spec.num_classes) +
        "; set model.num_classes=" + std::to_string(m.num_classes));
  if (m.multi_label != cfg.get_bool("data.multi_label"))
    throw std::invalid_argument(
        std::string(key) + " is " + (m.multi_label ? "multi-label" : "single-label") +
        " data but data.multi_label = " + (cfg.get_bool("data.multi_label") ? "true" : "false"));
}

at::Device choose_device(const config::Config& cfg, const dist::World& world) {
  const std::string want = cfg.get_string("train.device");
  const bool have = torch::cuda::is_available();
  if (want == "cuda" && !have)
    throw std::invalid_argument("train.device = cuda, but no CUDA device is visible to rank " +
                                std::to_string(world.rank()) + " on " + world.host());
  if (want == "cpu" || !have) return at::Device(at::kCPU);
  const int count = static_cast<int>(torch::cuda::device_count());
  const at::Device device(at::kCUDA, static_cast<c10::DeviceIndex>(world.local_rank() % count));
  // Make it this thread's current device, as torch.cuda.set_device(local_rank) does: whatever
  // runs on the current device (a pinned-memory allocation before any kernel, a library handle)
  // then lands on this rank's GPU, not as a stray context on GPU 0 of every rank. Through c10's
  // device-guard interface, so no CUDA header is needed here.
  c10::impl::getDeviceGuardImpl(at::kCUDA)->setDevice(device);
  return device;
}

namespace {
// train.cuda_kernels with auto replaced by the kernels measured faster on a GPU
// (bn_gelu_se_mean, which is bn_gelu and more; docs/GPU.md), where this build has them: a
// default never fails a build without nvcc.
std::vector<std::string> kernels_for(const std::vector<std::string>& kernels,
                                     const at::Device& device) {
  std::vector<std::string> out;
  for (const std::string& k : kernels) {
    if (k != "auto") {
      out.push_back(k);
    } else if (device.is_cuda() && cuda::kernels_built() &&
               std::find(kernels.begin(), kernels.end(), "bn_gelu_se_mean") == kernels.end()) {
      out.push_back("bn_gelu_se_mean");
    }
  }
  return out;
}
}  // namespace

config::Config resolved_for(const config::Config& cfg, const at::Device& device) {
  config::Config out = cfg;
  if (cfg.get_string("precision.backend") == "auto")
    out.set(std::string("precision.backend=") + (device.is_cuda() ? "bf16" : "fp32"));
  if (cfg.get_string("data.channels_last") == "auto")  // one rule: channels_last() below
    out.set(std::string("data.channels_last=") + (channels_last(cfg, device) ? "true" : "false"));
  // The rewrites of the model's arithmetic that measured faster on a GPU (docs/GPU.md): on by
  // default there (the BatchNorm fold only where it won: model/bn_fold.h). On CPU they were never
  // measured faster, and the CPU tests hold them to the composite's results, so auto keeps a CPU
  // run as it was. Nor in float32 on a GPU: they were measured in 16 bits, and there they would
  // trade cuDNN's convolutions, which ATen lets use TF32, for cuBLAS products in full float32
  // (ATen's default: TF32 off for matrix products), several times slower on tensor-core GPUs.
  const bool measured = device.is_cuda() && out.get_string("precision.backend") != "fp32";
  const std::pair<const char*, const char*> on_gpu[] = {
      {"train.pointwise_gemm", "true"}, {"train.bn_fold", "wide"}, {"train.se_fold", "true"}};
  for (const auto& [key, value] : on_gpu)
    if (cfg.get_string(key) == "auto")
      out.set(std::string(key) + "=" + (measured ? value : "false"));
  const std::vector<std::string>& kernels = cfg.get_strings("train.cuda_kernels");
  if (std::find(kernels.begin(), kernels.end(), "auto") != kernels.end())
    out.set("train.cuda_kernels=[" + text::join(kernels_for(kernels, device), ", ") + "]");
  return out;
}

bool channels_last(const config::Config& cfg, const at::Device& device) {
  const std::string v = cfg.get_string("data.channels_last");
  return v == "true" || (v == "auto" && device.is_cuda());
}

model::SdpaBackend sdpa_backend(const config::Config& cfg, const at::Device& device) {
  const std::string v = cfg.get_string("train.attention");
  if (v == "math") return model::SdpaBackend::kMath;
  if (v != "efficient" && v != "cudnn") return model::SdpaBackend::kAuto;
  if (!device.is_cuda())
    throw std::invalid_argument("train.attention = " + v +
                                " is a GPU backend of scaled_dot_product_attention, and this "
                                "rank runs on " +
                                device.str() + "; use auto or math");
  return v == "cudnn" ? model::SdpaBackend::kCudnn : model::SdpaBackend::kEfficient;
}

void configure_gpu_kernels(const config::Config& cfg, const at::Device& device) {
  if (!device.is_cuda()) return;
  const bool deterministic = cfg.get_bool("train.deterministic");
  at::globalContext().setBenchmarkCuDNN(!deterministic);
  at::globalContext().setDeterministicCuDNN(deterministic);
  // warn_only: an op without a deterministic implementation warns instead of failing the run.
  if (deterministic) at::globalContext().setDeterministicAlgorithms(true, /*warn_only=*/true);
}

namespace {

// train.cuda_kernels, checked: each name known, and the kernels built when a GPU run asks.
bool wants_cuda_kernel(const config::Config& cfg, const at::Device& device,
                       const std::string& name) {
  bool wanted = false;
  for (const std::string& k : kernels_for(cfg.get_strings("train.cuda_kernels"), device)) {
    if (k == "relpos_attention")
      throw std::invalid_argument(
          "train.cuda_kernels: relpos_attention was removed: on an H100 it ran at 0.35-0.54x "
          "the ATen attention it replaced (docs/GPU.md, \"Kernels\"); the T blocks use "
          "scaled_dot_product_attention. Drop it from the list");
    if (k != "batch_prep" && k != "bn_gelu" && k != "bn_gelu_se_mean" && k != "dw_conv_dgrad")
      throw std::invalid_argument(
          "train.cuda_kernels: unknown kernel '" + k +
          "'; the kernels of src/cuda are: batch_prep, bn_gelu, bn_gelu_se_mean, dw_conv_dgrad");
    // bn_gelu_se_mean is bn_gelu whose backward also takes the squeeze-excitation's mean.
    wanted = wanted || k == name || (name == "bn_gelu" && k == "bn_gelu_se_mean");
  }
  if (!wanted || !device.is_cuda()) return false;  // GPU runs only; a CPU run ignores them
  if (!cuda::kernels_built())
    throw std::invalid_argument(
        "train.cuda_kernels = [" + name +
        "], but this coatnet was built without its CUDA kernels (no nvcc at configure time; see "
        "`coatnet: CUDA kernels` in the configure output)");
  return true;
}

}  // namespace

bool use_batch_prep_kernel(const config::Config& cfg, const at::Device& device,
                           const data::Loader& loader) {
  if (!wants_cuda_kernel(cfg, device, "batch_prep")) return false;
  if (!loader.uint8_batches())
    throw std::invalid_argument(
        "train.cuda_kernels: batch_prep takes uint8 batches, but data.dtype = float32 normalises "
        "them on the loader threads; set data.dtype=auto (or uint8)");
  return true;
}

const model::BnGeluKernels* bn_gelu_kernels(const config::Config& cfg, const at::Device& device) {
  return wants_cuda_kernel(cfg, device, "bn_gelu") ? &cuda::bn_gelu_kernels() : nullptr;
}

bool bn_gelu_se_mean(const config::Config& cfg, const at::Device& device) {
  return wants_cuda_kernel(cfg, device, "bn_gelu_se_mean");
}

const model::DwConvKernels* dw_conv_kernels(const config::Config& cfg, const at::Device& device) {
  return wants_cuda_kernel(cfg, device, "dw_conv_dgrad") ? &cuda::dw_conv_kernels() : nullptr;
}

LoopOptions loop_options(const config::Config& cfg, const model::ModelSpec& spec,
                         int64_t train_batches_per_epoch, int64_t train_samples) {
  LoopOptions o;
  o.accum = cfg.get_int("optim.accum_steps");
  o.global_batch = cfg.get_int("data.batch_size");
  o.steps_per_epoch = train_batches_per_epoch / o.accum;
  if (o.steps_per_epoch == 0)
    throw std::invalid_argument(
        "data.train has " + std::to_string(train_samples) +
        " samples: fewer than one optimizer step of data.batch_size × optim.accum_steps = " +
        std::to_string(o.global_batch * o.accum));
  o.epochs = cfg.get_int("schedule.epochs");
  o.total_steps = o.epochs * o.steps_per_epoch;
  if (cfg.get_int("train.max_steps") > 0)
    o.total_steps = std::min(o.total_steps, cfg.get_int("train.max_steps"));
  o.log_every = cfg.get_int("train.log_every_steps");
  o.eval_every = cfg.get_int("train.eval_every_steps");
  o.checkpoint_every = cfg.get_int("checkpoint.every_steps");
  o.clip = cfg.get_float("optim.clip_grad");
  o.max_bad_steps = static_cast<double>(cfg.get_int("precision.max_bad_steps"));
  o.checkpoints = cfg.get_bool("checkpoint.enabled");
  o.reduce_bn = !cfg.get_bool("dist.sync_bn");  // SyncBN keeps them equal already
  o.loss =
      cfg.get_string("loss.type") == "sigmoid_bce" ? LossType::SigmoidBCE : LossType::SoftmaxCE;
  o.schedule.type = cfg.get_string("schedule.type");
  o.schedule.lr = cfg.get_float("optim.lr");
  o.schedule.min_lr = cfg.get_float("schedule.min_lr");
  o.schedule.warmup_steps = cfg.get_int("schedule.warmup_steps");
  o.schedule.total_steps = o.epochs * o.steps_per_epoch;  // train.max_steps cuts, not squeezes
  o.mix.mixup_alpha = cfg.get_float("aug.mixup");
  o.mix.cutmix_alpha = cfg.get_float("aug.cutmix");
  o.mix.label_smoothing = cfg.get_float("loss.label_smoothing");
  o.mix.num_classes = spec.num_classes;
  o.mix.seed = static_cast<uint64_t>(cfg.get_int("train.seed"));
  return o;
}

AdamWOptions adamw_options(const config::Config& cfg) {
  AdamWOptions aw;
  aw.beta1 = cfg.get_floats("optim.betas").at(0);
  aw.beta2 = cfg.get_floats("optim.betas").at(1);
  aw.eps = cfg.get_float("optim.eps");
  aw.weight_decay = cfg.get_float("optim.weight_decay");
  return aw;
}

checkpoint::CheckpointOptions checkpoint_options(const config::Config& cfg, const std::string& root,
                                                 const model::ModelSpec& spec,
                                                 const LoopOptions& loop,
                                                 const std::string& config_text) {
  checkpoint::CheckpointOptions co;
  co.root = root;
  co.backend = cfg.get_string("checkpoint.backend");
  co.async = cfg.get_bool("checkpoint.async");
  co.keep_last = cfg.get_int("checkpoint.keep_last");
  co.keep_every = cfg.get_int("checkpoint.keep_every");
  co.stop_on_error = cfg.get_string("checkpoint.on_error") == "stop";
  co.config_text = config_text;
  co.config_hash = checkpoint::recipe_hash(cfg.recipe());
  co.model = spec.name;
  co.seed = static_cast<uint64_t>(cfg.get_int("train.seed"));
  co.global_batch = loop.global_batch;
  co.accum_steps = loop.accum;
  return co;
}

int compute_threads(const config::Config& cfg, const dist::World& world) {
  const int64_t t = cfg.get_int("train.threads");
  return t > 0 ? static_cast<int>(t) : world.threads_per_rank();
}

int decode_threads(const config::Config& cfg, int compute_threads) {
  const int64_t w = cfg.get_int("data.workers");
  return w > 0 ? static_cast<int>(w) : compute_threads;
}

}  // namespace coatnet::train
