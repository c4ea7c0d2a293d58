// The parts a training run is made of, built once from the config in the order they depend on
// each other — threads, device, comm → model (same seed everywhere, then rank 0's weights
// broadcast) → flat parameters, gradient buckets → AdamW, EMA → loaders → loop options — so
// that train() only runs them, and nothing in the loop reads the config.
//
//   RunParts run(cfg, world, progress);   // throws naming the key when the config cannot run
//   run.optimizer.step(lr, found_inf);
#pragma once

#include <c10/core/Device.h>

#include <cstdint>
#include <memory>
#include <optional>
#include <string>

#include "config/config.h"
#include "data/loader.h"
#include "dist/comm.h"
#include "dist/grad_buckets.h"
#include "dist/sync_bn.h"
#include "model/bn_fold.h"
#include "model/bn_gelu.h"
#include "model/coatnet.h"
#include "model/layers.h"
#include "train/checkpoint_state.h"
#include "train/ema.h"
#include "train/flat_params.h"
#include "train/optim.h"
#include "train/precision.h"
#include "train/report.h"
#include "train/setup.h"
#include "train/zero.h"
#include "util/progress.h"

namespace coatnet::dist {
class World;
}

namespace coatnet::train {

class RunParts {
 public:
  RunParts(const config::Config& requested, dist::World& world, util::Progress& progress);
  RunParts(const RunParts&) = delete;
  RunParts& operator=(const RunParts&) = delete;

  // The members in construction order (each may use the ones above it).
  const int threads;  // intra-op threads of this rank (set)
  const int workers;  // decode threads of this rank
  const at::Device device;
  // The requested config with its device-dependent "auto"s resolved: what runs is what the run
  // directory's config and the checkpoints record.
  const config::Config cfg;
  const std::unique_ptr<dist::Comm> comm;
  const std::unique_ptr<Precision> precision;
  const model::ModelSpec spec;
  model::CoAtNet net;
  FlatParams flat;  // padded to world equal shards under ZeRO-1
  // optim.zero: the range of the flat buffers this rank owns (all of them without ZeRO-1), and
  // the reduced gradients of that range (flat.grads itself without ZeRO-1).
  const dist::Partition part;
  const at::Tensor grads;
  std::optional<dist::SyncBatchNormScope> sync_bn;          // dist.sync_bn
  std::optional<model::BnGeluKernelsScope> bn_gelu;         // train.cuda_kernels: bn_gelu, on a GPU
  std::optional<model::BnGeluSeMeanScope> bn_gelu_se_mean;  // ... bn_gelu_se_mean
  std::optional<model::DwConvKernelsScope> dw_conv;         // ... dw_conv_dgrad
  std::optional<model::PointwiseGemmScope> pointwise_gemm;  // train.pointwise_gemm
  std::optional<model::SeFoldScope> se_fold;                // train.se_fold
  std::optional<model::BnFoldScope> bn_fold;                // train.bn_fold
  std::optional<model::SdpaBackendScope> attention;         // train.attention
  dist::GradBuckets buckets;
  AdamW optimizer;
  std::unique_ptr<ModelEma> ema;  // train.ema_decay > 0
  ParamsGather gather;            // ZeRO-1: the updated ranges to every rank
  data::Loader train_loader;
  std::unique_ptr<data::Loader> val_loader;  // data.val given
  const LoopOptions loop;
  const bool batch_prep_kernel;  // train.cuda_kernels: batch_prep, on a GPU

  TrainState state() { return TrainState{*net, flat, optimizer, ema.get(), *precision}; }
  // The "env" record's facts (gathers every rank's placement: all ranks call it).
  RunFacts facts(dist::World& world, int64_t start_step, const std::string& resumed_from) const;
  // "[train] coatnet_0_224, 27 M parameters, 2 rank(s) × ... ; run directory D"
  std::string banner(const dist::World& world, const std::string& run_dir) const;
};

}  // namespace coatnet::train
