#include "train/run_parts.h"

#include <ATen/Parallel.h>

#include <stdexcept>
#include <string>
#include <vector>

#include "checkpoint/checkpointer.h"
#include "cuda/device_memory.h"
#include "dist/world.h"
#include "model/variants.h"
#include "model/weights.h"
#include "train/graphed_step.h"
#include "util/text.h"

namespace coatnet::train {

namespace {

int set_threads(const config::Config& cfg, const dist::World& world) {
  const int threads = compute_threads(cfg, world);
  at::set_num_threads(threads);
  return threads;
}

// The config as this run will use it; refuses what cannot run before anything is built.
config::Config run_config(const config::Config& requested, const at::Device& device,
                          dist::World& world) {
  config::Config cfg = resolved_for(requested, device);
  world.set_timeout(cfg.get_float("dist.timeout_s"));
  configure_gpu_kernels(cfg, device);
  if (cfg.get_bool("checkpoint.enabled"))
    checkpoint::Checkpointer::check_backend(cfg.get_string("checkpoint.backend"));
  resolve_cuda_graph(cfg, device, world.size());
  const bool zero =
      zero_enabled(cfg.get_string("optim.zero"), world.size(), cfg.get_bool("checkpoint.enabled"),
                   cfg.get_string("checkpoint.backend"), cuda_graph_on(cfg));
  cfg.set(std::string("optim.zero=") + (zero ? "1" : "0"));
  check_cuda_graph(cfg, device, world.size());
  if (cfg.get_string("train.resume") == "auto" && cfg.get_string("train.name").empty() &&
      cfg.get_string("checkpoint.dir").empty())
    throw std::invalid_argument(
        "--resume auto needs a fixed run directory to find the checkpoints in: set train.name "
        "(e.g. --set train.name=$SLURM_JOB_NAME) or checkpoint.dir");
  return cfg;
}

std::unique_ptr<dist::Comm> run_comm(const config::Config& cfg, const dist::World& world,
                                     const at::Device& device) {
  dist::CommOptions o;
  o.timeout_s = cfg.get_float("dist.timeout_s");
  o.device_index = device.is_cuda() ? device.index() : -1;
  return dist::make_comm(cfg.get_string("dist.backend"), world, o, device.is_cuda());
}

// The model of the config on `device`, from train.seed (the same on every rank), or from
// model.init_from's weights when it names some.
model::CoAtNet build_model(const config::Config& cfg, const model::ModelSpec& spec,
                           const at::Device& device, util::Progress& progress) {
  at::manual_seed(static_cast<uint64_t>(cfg.get_int("train.seed")));
  model::CoAtNet net(spec);
  if (!cfg.get_string("model.init_from").empty()) {
    model::LoadReport rep = model::load_weights(*net, cfg.get_string("model.init_from"));
    if (!rep.resized.empty())
      progress.message("[init] resized " + std::to_string(rep.resized.size()) +
                       " relative-position bias tables to " + std::to_string(spec.image_size) +
                       " px");
    if (!rep.counters_zeroed.empty())
      progress.message("[init] " + std::to_string(rep.counters_zeroed.size()) +
                       " BatchNorm num_batches_tracked absent from the weights: set to 0");
  }
  net->to(device);
  return net;
}

// All ranks start from rank 0's weights and buffers (the seed is shared too; this makes it
// true whatever a custom init or --init-from did).
void broadcast_model(torch::nn::Module& net, FlatParams& flat, dist::Comm& comm) {
  at::NoGradGuard no_grad;
  comm.broadcast(flat.values, 0, "initial parameters");
  for (at::Tensor b : net.buffers(true)) {
    at::Tensor c = b.contiguous();
    comm.broadcast(c, 0, "initial buffers");
    if (!c.is_same(b)) b.copy_(c);
  }
}

data::LoaderOptions training_data(const config::Config& cfg, const dist::World& world, int workers,
                                  const model::ModelSpec& spec, const at::Device& device) {
  if (cfg.get_strings("data.train").empty())
    throw std::invalid_argument("data.train is empty: list the training shards (coatnet pack)");
  return loader_options(cfg, world, true, workers, spec, device);
}

// The flat buffers' shards: one per rank under ZeRO-1 (optim.zero 1 with several ranks).
int shards(const config::Config& cfg, const dist::Comm& comm) {
  return cfg.get_string("optim.zero") == "1" ? comm.size() : 1;
}

// The range of them this rank owns: all of it with one shard.
dist::Partition owned_range(const FlatParams& flat, const dist::Comm& comm, int shards) {
  return dist::Partition::even(flat.numel(), shards > 1 ? comm.rank() : 0, shards);
}

// The reduced gradients AdamW reads: under ZeRO-1 this rank's range only, the target of the
// buckets' reduce-scatter; else the flat gradient buffer itself.
at::Tensor owned_grads(const FlatParams& flat, const dist::Partition& part) {
  return part.sharded() ? at::zeros({part.shard}, flat.grads.options()) : flat.grads;
}

int64_t megabytes(const config::Config& cfg, const char* key) {
  return static_cast<int64_t>(cfg.get_float(key) * (1 << 20));
}

}  // namespace

RunParts::RunParts(const config::Config& requested, dist::World& world, util::Progress& progress)
    : threads(set_threads(requested, world)),
      workers(decode_threads(requested, threads)),
      device(choose_device(requested, world)),
      cfg(run_config(requested, device, world)),
      comm(run_comm(cfg, world, device)),
      precision(make_precision(cfg.get_string("precision.backend"))),
      spec(model::spec_from_config(cfg)),
      net(build_model(cfg, spec, device, progress)),
      flat(*net, shards(cfg, *comm)),
      part(owned_range(flat, *comm, shards(cfg, *comm))),
      grads(owned_grads(flat, part)),
      buckets(flat.params(), flat.grads, flat.offsets(), *comm,
              megabytes(cfg, "dist.first_bucket_mb"), megabytes(cfg, "dist.bucket_mb")),
      optimizer(flat, adamw_options(cfg), part, grads),
      gather(flat.values, part, *comm),
      train_loader(training_data(cfg, world, workers, spec, device)),
      loop(
          loop_options(cfg, spec, train_loader.batches_per_epoch(), train_loader.dataset().size())),
      batch_prep_kernel(use_batch_prep_kernel(cfg, device, train_loader)) {
  broadcast_model(*net, flat, *comm);
  if (part.sharded()) buckets.scatter_into(grads, part);
  if (cfg.get_bool("dist.sync_bn")) sync_bn.emplace(*comm);
  if (const model::BnGeluKernels* k = bn_gelu_kernels(cfg, device)) bn_gelu.emplace(k);
  if (train::bn_gelu_se_mean(cfg, device)) bn_gelu_se_mean.emplace(true);
  if (const model::DwConvKernels* k = dw_conv_kernels(cfg, device)) dw_conv.emplace(k);
  // cfg is resolved_for this device: auto is true or false by now.
  if (cfg.get_string("train.pointwise_gemm") == "true") pointwise_gemm.emplace(true);
  if (cfg.get_string("train.se_fold") == "true") se_fold.emplace(true);
  if (const std::string f = cfg.get_string("train.bn_fold"); f != "false")
    bn_fold.emplace(f == "wide" ? model::BnFold::kWide : model::BnFold::kEvery);
  if (const model::SdpaBackend a = sdpa_backend(cfg, device); a != model::SdpaBackend::kAuto)
    attention.emplace(a);
  // After the broadcast: the EMA starts from the weights every rank shares.
  if (cfg.get_float("train.ema_decay") > 0)
    ema =
        std::make_unique<ModelEma>(flat, *net, cfg.get_float("train.ema_decay"), part, comm.get());
  check_dataset(train_loader, spec, cfg, "data.train");
  if (!cfg.get_strings("data.val").empty()) {
    val_loader =
        std::make_unique<data::Loader>(loader_options(cfg, world, false, workers, spec, device));
    check_dataset(*val_loader, spec, cfg, "data.val");
  }
}

RunFacts RunParts::facts(dist::World& world, int64_t start_step,
                         const std::string& resumed_from) const {
  RunFacts f;
  f.world_size = world.size();
  f.ranks_per_node = world.local_size();
  f.threads = threads;
  f.decode_threads = workers;
  f.placements = world.gather_strings(world.host() + "\t" + std::to_string(world.local_rank()) +
                                      "\t" + std::to_string(threads) + "\t" + device.str());
  f.comm = comm->name();
  f.model = spec.name;
  f.parameters = flat.parameter_count();
  f.train_samples = train_loader.dataset().size();
  f.val_samples = val_loader ? val_loader->dataset().size() : 0;
  f.global_batch = loop.global_batch;
  f.accum_steps = loop.accum;
  f.steps_per_epoch = loop.steps_per_epoch;
  f.total_steps = loop.total_steps;
  f.start_step = start_step;
  f.resumed_from = resumed_from;
  return f;
}

std::string RunParts::banner(const dist::World& world, const std::string& run_dir) const {
  // precision.backend and data.channels_last as resolved for this device (auto: bf16 and
  // channels-last on a GPU).
  const std::string gpu = device.is_cuda() ? cuda::device_name(device) : "";
  // What of the model's arithmetic runs other than as ATen's composites (train.cuda_kernels and
  // the folds; auto turns the ones measured faster on a GPU on there).
  std::vector<std::string> fused;
  if (batch_prep_kernel) fused.push_back("batch_prep");
  if (bn_gelu) fused.push_back(bn_gelu_se_mean ? "bn_gelu_se_mean" : "bn_gelu");
  if (dw_conv) fused.push_back("dw_conv_dgrad");
  if (bn_fold)
    fused.push_back(model::bn_fold() == model::BnFold::kWide ? "bn_fold (wide)" : "bn_fold");
  if (se_fold) fused.push_back("se_fold");
  if (pointwise_gemm) fused.push_back("pointwise_gemm");
  if (attention) fused.push_back("attention: " + cfg.get_string("train.attention"));
  return "[train] " + spec.name + ", " + std::to_string(flat.parameter_count()) + " parameters, " +
         std::to_string(world.size()) + " rank(s) × " + std::to_string(threads) + " thread(s) on " +
         device.str() + (gpu.empty() ? "" : " (" + gpu + ")") + ", " +
         cfg.get_string("precision.backend") +
         (channels_last(cfg, device) ? ", channels-last" : "") +
         (fused.empty() ? std::string() : " (" + text::join(fused, ", ") + ")") +
         (cuda_graph_on(cfg) ? ", the step as a CUDA graph" : "") + ", comm " + comm->name() +
         ", " + std::to_string(buckets.buckets().size()) + " gradient bucket(s)" +
         (part.sharded()
              ? ", optimizer state sharded over " + std::to_string(part.world) + " ranks (ZeRO-1)"
              : std::string()) +
         "; " + std::to_string(loop.total_steps) + " steps of " +
         std::to_string(loop.global_batch * loop.accum) + " images; run directory " + run_dir;
}

}  // namespace coatnet::train
