// Turning a resolved config into the parts a run is made of, shared by `coatnet train` and
// `coatnet eval`: the device of this rank, its thread counts, and the loaders.
#pragma once

#include <string>

#include <c10/core/Device.h>

#include "checkpoint/checkpointer.h"
#include "data/loader.h"
#include "data/mixup.h"
#include "model/bn_gelu.h"
#include "model/dw_conv.h"
#include "model/transformer.h"
#include "train/loss.h"
#include "train/optim.h"

namespace coatnet::config {
class Config;
}
namespace coatnet::dist {
class World;
}
namespace coatnet::model {
struct ModelSpec;
}

namespace coatnet::train {

// train.device: this local rank's GPU when CUDA is available (auto/cuda), else the CPU.
at::Device choose_device(const config::Config& cfg, const dist::World& world);
// The config with its device-dependent defaults resolved: precision.backend auto is bf16 on a
// GPU and fp32 on CPU, data.channels_last auto is true on a GPU (the paper's recipes then run
// as a GPU user expects unless the config says otherwise).
config::Config resolved_for(const config::Config& cfg, const at::Device& device);
// data.channels_last with auto resolved: NHWC batches on a GPU.
bool channels_last(const config::Config& cfg, const at::Device& device);
// Whether train.cuda_kernels asks for batch_prep and it applies (a GPU run); unknown kernel
// names, a build without the kernels and float32 batches are errors naming the fix.
bool use_batch_prep_kernel(const config::Config& cfg, const at::Device& device,
                           const data::Loader& loader);
// The fused BatchNorm + GELU kernels when train.cuda_kernels asks for bn_gelu on a GPU, else
// nullptr (the composite); errors as use_batch_prep_kernel.
const model::BnGeluKernels* bn_gelu_kernels(const config::Config& cfg, const at::Device& device);
// Whether train.cuda_kernels asks for bn_gelu_se_mean on a GPU (bn_gelu_kernels is then set too):
// the MBConv's BatchNorm + GELU before its squeeze-excitation also takes the spatial mean.
bool bn_gelu_se_mean(const config::Config& cfg, const at::Device& device);
// The depthwise stride-2 convolution's input-gradient kernel when train.cuda_kernels asks for
// dw_conv_dgrad on a GPU, else nullptr (cuDNN's); errors as use_batch_prep_kernel.
const model::DwConvKernels* dw_conv_kernels(const config::Config& cfg, const at::Device& device);
// train.attention: the backend the T blocks' scaled_dot_product_attention may take. The GPU's
// own (efficient, cudnn) on a CPU run is an error naming the key.
model::SdpaBackend sdpa_backend(const config::Config& cfg, const at::Device& device);
// cuDNN's benchmark mode, or deterministic algorithms (train.deterministic); nothing on CPU.
void configure_gpu_kernels(const config::Config& cfg, const at::Device& device);
// Intra-op threads (train.threads, or a fair share of the node) and decode threads per rank.
int compute_threads(const config::Config& cfg, const dist::World& world);
int decode_threads(const config::Config& cfg, int compute_threads);

// The training loader (shuffled, drop_last, augmented) or the evaluation loader (dataset
// order, padded and masked so each sample counts once; the batch is rounded up to a multiple
// of the world size).
// `device` decides data.dtype=auto (uint8 on CUDA) and whether batches are pinned.
data::LoaderOptions loader_options(const config::Config& cfg, const dist::World& world,
                                   bool train_split, int threads, const model::ModelSpec& spec,
                                   const at::Device& device);
// What the loop reads, resolved once from the config and the training data (no config lookups
// inside the loop).
struct LoopOptions {
  int64_t accum = 1, global_batch = 1;  // optim.accum_steps, data.batch_size
  int64_t epochs = 1, steps_per_epoch = 1, total_steps = 1;
  int64_t log_every = 1, eval_every = 0, checkpoint_every = 0;
  double clip = 0;           // optim.clip_grad (0: off)
  double max_bad_steps = 0;  // precision.max_bad_steps: non-finite steps in a row that stop it
  bool checkpoints = false;  // checkpoint.enabled
  bool reduce_bn = true;     // average BatchNorm statistics for evaluation (not with SyncBN)
  LossType loss = LossType::SoftmaxCE;
  ScheduleOptions schedule;
  data::MixOptions mix;
  // An optimizer step, an epoch or the end: whether `done` steps call for each.
  bool log_at(int64_t done) const { return done % log_every == 0 || done == total_steps; }
  bool epoch_end(int64_t done) const { return done % steps_per_epoch == 0; }
  bool eval_at(int64_t done) const {
    return epoch_end(done) || (eval_every > 0 && done % eval_every == 0) || done == total_steps;
  }
  bool save_at(int64_t done, bool stop) const {
    return checkpoints &&
           (stop || epoch_end(done) || (checkpoint_every > 0 && done % checkpoint_every == 0) ||
            done == total_steps);
  }
};
// Throws naming the keys when the training data holds less than one optimizer step.
LoopOptions loop_options(const config::Config& cfg, const model::ModelSpec& spec,
                         int64_t train_batches_per_epoch, int64_t train_samples);
AdamWOptions adamw_options(const config::Config& cfg);
checkpoint::CheckpointOptions checkpoint_options(const config::Config& cfg, const std::string& root,
                                                 const model::ModelSpec& spec,
                                                 const LoopOptions& loop,
                                                 const std::string& config_text);

// The shards must fit the model: classes within model.num_classes, the same label kind.
void check_dataset(const data::Loader& loader, const model::ModelSpec& spec,
                   const config::Config& cfg, const char* key);

}  // namespace coatnet::train
