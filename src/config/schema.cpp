#include "config/schema.h"

#include <cstdio>

namespace coatnet::config {

namespace {

constexpr double kInf = std::numeric_limits<double>::infinity();

KeySpec key(std::string path, Kind kind, std::string def, std::string doc, double min = -kInf,
            double max = kInf) {
  return KeySpec{std::move(path), kind, std::move(def), std::move(doc), min, max, {}};
}

KeySpec choice(std::string path, std::string def, std::vector<std::string> choices,
               std::string doc) {
  KeySpec k{std::move(path), Kind::Enum, std::move(def), std::move(doc), -kInf, kInf, {}};
  k.choices = std::move(choices);
  return k;
}

std::vector<KeySpec> build() {
  using K = Kind;
  return {
      // model -----------------------------------------------------------------------------
      key("model.name", K::String, "coatnet_0_224",
          "variant (coatnet_0_224..coatnet_7_224, coatnet_0_rw_224, coatnet_nano_rw_224) or "
          "'custom'"),
      key("model.layout", K::String, "",
          "block types of stages S1-S4, e.g. CCTT; empty keeps the variant's"),
      key("model.depths", K::IntList, "[]", "blocks per stage; empty keeps the variant's", 1, 256),
      key("model.strides", K::IntList, "[]",
          "per stage: 2 downsamples, 1 keeps the resolution; empty keeps the variant's (2 each)", 1,
          2),
      key("model.widths", K::IntList, "[]", "channels per stage; empty keeps the variant's", 8,
          16384),
      key("model.stem_width", K::Int, "0", "stem channels; 0 keeps the variant's", 0, 16384),
      key("model.head_hidden", K::Int, "-1",
          "pre-logits width of the head; 0 = none, -1 keeps the variant's", -1, 16384),
      key("model.dim_head", K::Int, "32", "channels per attention head", 8, 1024),
      key("model.image_size", K::Int, "224", "input height and width in pixels", 16, 4096),
      key("model.in_chans", K::Int, "3", "input channels", 1, 64),
      key("model.num_classes", K::Int, "1000", "classifier outputs", 1, 1 << 24),
      key("model.drop_path", K::Float, "0.0", "stochastic depth rate of the last block", 0, 0.99),
      key("model.drop_rate", K::Float, "0.0", "dropout before the classifier", 0, 0.99),
      key("model.init_from", K::String, "",
          "safetensors weights (timm names) to start from; bias tables are resized"),
      // data ------------------------------------------------------------------------------
      key("data.train", K::StringList, "[]", "training shard files or globs (coatnet pack)"),
      key("data.val", K::StringList, "[]", "validation shard files or globs"),
      key("data.batch_size", K::Int, "256", "global batch size, split evenly over ranks", 1,
          1 << 24),
      key("data.workers", K::Int, "0", "decode threads per rank; 0 = cores per rank", 0, 512),
      key("data.prefetch", K::Int, "4", "batches decoded ahead of the trainer", 1, 64),
      key("data.mean", K::FloatList, "[0.485, 0.456, 0.406]", "per-channel mean (0-1 scale)", 0, 1),
      key("data.std", K::FloatList, "[0.229, 0.224, 0.225]", "per-channel std (0-1 scale)", 1e-6,
          10),
      key("data.crop_pct", K::Float, "0.875", "eval: center crop / resized shorter side", 0.1, 1),
      key("data.multi_label", K::Bool, "false", "JFT-style multi-label targets"),
      choice("data.channels_last", "auto", {"auto", "true", "false"},
             "batches in NHWC memory format, so the convolutional stages run channels-last; "
             "auto: true on a GPU, false on CPU"),
      choice("data.dtype", "auto", {"auto", "float32", "uint8"},
             "batches from the loader: uint8 is normalised on the device (4x less host-to-device "
             "traffic); auto = uint8 on CUDA, float32 on CPU"),
      key("data.pin_memory", K::Bool, "true",
          "page-locked batches on CUDA, so the copy to the GPU overlaps compute"),
      choice("data.on_corrupt", "skip", {"skip", "error"},
             "a record that fails to decode: count and skip it, or stop"),
      // augmentation ----------------------------------------------------------------------
      key("aug.scale_min", K::Float, "0.08", "RandomResizedCrop minimum area fraction", 0.01, 1),
      key("aug.hflip", K::Float, "0.5", "horizontal flip probability", 0, 1),
      key("aug.randaugment_n", K::Int, "0", "RandAugment ops per image; 0 = off", 0, 10),
      key("aug.randaugment_m", K::Int, "10", "RandAugment magnitude", 0, 30),
      key("aug.mixup", K::Float, "0.0", "Mixup alpha; 0 = off", 0, 10),
      key("aug.cutmix", K::Float, "0.0", "CutMix alpha; 0 = off", 0, 10),
      // loss ------------------------------------------------------------------------------
      choice("loss.type", "softmax_ce", {"softmax_ce", "sigmoid_bce"},
             "softmax cross-entropy (ImageNet) or sigmoid BCE (multi-label, JFT)"),
      key("loss.label_smoothing", K::Float, "0.1", "label smoothing", 0, 0.99),
      // optimizer and schedule ------------------------------------------------------------
      choice("optim.name", "adamw", {"adamw"}, "optimizer (AdamW, decoupled weight decay)"),
      key("optim.lr", K::Float, "1e-3", "peak learning rate", 0, 100),
      key("optim.weight_decay", K::Float, "0.05",
          "decoupled weight decay (none on norms, biases, bias tables)", 0, 10),
      key("optim.betas", K::FloatList, "[0.9, 0.999]", "AdamW betas", 0, 0.999999),
      key("optim.eps", K::Float, "1e-8", "AdamW epsilon", 0, 1),
      key("optim.clip_grad", K::Float, "1.0", "clip the global gradient norm; 0 = off", 0, 1e6),
      key("optim.accum_steps", K::Int, "1", "micro-steps per optimizer step", 1, 4096),
      choice("optim.zero", "auto", {"auto", "0", "1"},
             "ZeRO-1: 1 splits AdamW's moments, the EMA and the update over the ranks "
             "(gradients reduce-scattered, parameters all-gathered); 0 keeps them whole on "
             "every rank; auto: 1 with more than one rank (0 with checkpoint.backend consolidated "
             "or train.cuda_graph)"),
      choice("schedule.type", "cosine", {"cosine", "linear", "constant"},
             "decay after warm-up, down to schedule.min_lr"),
      key("schedule.epochs", K::Int, "300", "training epochs", 1, 100000),
      key("schedule.warmup_steps", K::Int, "10000", "linear warm-up steps from 0", 0, 1e9),
      key("schedule.min_lr", K::Float, "1e-5", "learning rate at the end of decay", 0, 100),
      // training loop ---------------------------------------------------------------------
      key("train.seed", K::Int, "0", "seed of data order, augmentation and init", 0, 1e15),
      key("train.max_steps", K::Int, "0", "stop after this many steps; 0 = run all epochs", 0,
          1e15),
      key("train.ema_decay", K::Float, "0.0", "EMA of weights (evaluated too); 0 = off", 0,
          0.999999),
      key("train.eval_every_steps", K::Int, "0", "also evaluate every N steps; 0 = epoch ends", 0,
          1e15),
      key("train.log_every_steps", K::Int, "50", "steps between progress lines", 1, 1e9),
      key("train.run_dir", K::String, "runs", "parent directory of run directories"),
      key("train.name", K::String, "", "run directory name; empty = model name + time"),
      key("train.resume", K::String, "",
          "resume from: auto (the run's newest valid checkpoint, or start fresh when none), a "
          "step-… directory, or a checkpoint directory; empty = start fresh"),
      choice("train.device", "auto", {"auto", "cpu", "cuda"},
             "auto: the GPU of this rank's local rank when CUDA is available, else the CPU"),
      key("train.cuda_kernels", K::StringList, "[auto]",
          "CUDA kernels of src/cuda for GPU runs (a CPU run ignores them): bn_gelu (BatchNorm + "
          "GELU of the MBConv blocks and the stem fused, forward and backward; channels-last, "
          "without dist.sync_bn), bn_gelu_se_mean (bn_gelu, and the MBConv's squeeze-excitation "
          "mean taken into it: its gradient added as the backward reads dy), dw_conv_dgrad (the "
          "input gradient of the MBConv's depthwise stride-2 "
          "convolution in one gather pass instead of cuDNN's; opt-in: faster than cuDNN alone, "
          "not yet in a step), "
          "batch_prep (uint8 batch -> normalise -> Mixup/CutMix -> the "
          "autocast dtype, channels-last, in one pass); auto: those measured faster on a GPU "
          "(bn_gelu_se_mean) where this build has them; [] for ATen's operations only"),
      key("train.profile_steps", K::Int, "0",
          "profile this many steps with PyTorch's profiler (GPU kernels too) into "
          "RUN_DIR/profile/ (trace.json, summary.json); 0 = off",
          0, 1e6),
      key("train.profile_start", K::Int, "10",
          "the first profiled step (0-based; after the first steps, which warm up)", 0, 1e15),
      choice(
          "train.pointwise_gemm", "auto", {"auto", "true", "false"},
          "1x1 convolutions of channels-last activations as matrix products with the bias in "
          "the product's epilogue (cuBLASLt on a GPU), instead of cuDNN then a separate bias "
          "add; auto: true on a GPU in bf16 or fp16 (measured faster there), false on CPU and in "
          "fp32 (ATen's cuDNN convolutions may use TF32, its matrix products do not)"),
      choice("train.bn_fold", "auto", {"auto", "true", "wide", "false"},
             "the MBConv blocks' pre-norm BatchNorm, 1x1 expansion and the BatchNorm after it as "
             "one matrix product of the block's input (the batch's statistics from its mean and "
             "covariance); channels-last, not fp16, without dist.sync_bn; true: every block, "
             "wide: only blocks whose expansion is more than 4x as wide as their input (each "
             "stage's first; the fold lost to the composite at 4x on a GPU); auto: wide on a GPU "
             "in bf16, false on CPU and in fp32"),
      choice("train.se_fold", "auto", {"auto", "true", "false"},
             "the MBConv blocks' squeeze-excitation gate folded into the 1x1 projection after it "
             "(one batched matrix product with per-sample scaled weights), instead of multiplying "
             "the activation by the gate and then convolving it; auto: true on a GPU in bf16 or "
             "fp16 (measured faster there), false on CPU and in fp32"),
      choice("train.attention", "auto", {"auto", "efficient", "cudnn", "math"},
             "the backend of scaled_dot_product_attention the T blocks' relative-position "
             "attention takes: auto (ATen's choice; on the GPUs measured, its memory-efficient "
             "kernel), efficient, cudnn (GPU only: cuDNN's fused attention, where it takes the "
             "bias with its gradient), math (explicit products); any but auto allows that one "
             "alone, so an input it refuses ends the run"),
      choice("train.cuda_graph", "auto", {"auto", "true", "false"},
             "GPU: after 3 eager steps, capture the whole training step (forward, backward, the "
             "gradient all-reduce, clipping, AdamW, EMA) as one CUDA graph and replay it every "
             "step; optim.accum_steps 1, one rank per GPU with nccl, without ZeRO-1 (optim.zero "
             "auto then means 0); auto: true at one rank on a GPU (measured faster there), false "
             "at several ranks (not yet run on several GPUs) and on CPU"),
      choice("train.sync_check", "off", {"off", "warn", "error"},
             "GPU: warn about, or end the run at, an operation that makes the host wait for the "
             "GPU inside a training step (a copy from pageable memory, .item()); log, evaluation "
             "and checkpoint steps read results back and are not checked"),
      key("train.deterministic", K::Bool, "false",
          "GPU: deterministic cuDNN and ATen algorithms (bit-identical reruns and resumes), "
          "instead of cuDNN's benchmark mode (the fastest algorithms, chosen per run)"),
      choice("train.progress", "auto", {"auto", "bar", "lines"},
             "rank 0's progress: a live bar, plain lines every log step, or auto (bar on a "
             "terminal; under mpirun set it, as mpirun gives ranks a terminal)"),
      key("train.threads", K::Int, "0", "CPU intra-op threads; 0 = cores per node / local ranks", 0,
          4096),
      // distributed -----------------------------------------------------------------------
      key("dist.backend", K::String, "auto",
          "comm plugin: auto (nccl on GPU, else mpi), mpi, nccl"),
      key("dist.bucket_mb", K::Float, "25", "gradient bucket size in MiB", 0.01, 4096),
      key("dist.first_bucket_mb", K::Float, "1", "first (earliest-ready) bucket size in MiB", 0.01,
          4096),
      key("dist.timeout_s", K::Float, "600", "abort the job when a collective takes longer", 1,
          1e6),
      key("dist.sync_bn", K::Bool, "false", "synchronise BatchNorm statistics across ranks"),
      // plugins ---------------------------------------------------------------------------
      key("precision.backend", K::String, "auto",
          "precision plugin: fp32, bf16 (autocast, fp32 master weights), fp16 (autocast + "
          "dynamic loss scaling), another listed by `coatnet plugins`, or auto (bf16 on a GPU, "
          "fp32 on CPU)"),
      key("precision.max_bad_steps", K::Int, "10", "stop after N consecutive non-finite steps", 1,
          1e9),
      key("checkpoint.enabled", K::Bool, "true",
          "save checkpoints (at epoch ends, every checkpoint.every_steps, at the end, on a stop "
          "signal)"),
      key("checkpoint.backend", K::String, "sharded",
          "checkpoint plugin: sharded (ZeRO-1), consolidated"),
      key("checkpoint.dir", K::String, "", "checkpoint directory; empty = RUN_DIR/checkpoints"),
      key("checkpoint.every_steps", K::Int, "0", "save every N steps; 0 = only at epoch ends", 0,
          1e15),
      key("checkpoint.keep_last", K::Int, "3", "keep the newest K checkpoints", 1, 1e6),
      key("checkpoint.keep_every", K::Int, "0", "also keep every M-th step; 0 = none", 0, 1e15),
      key("checkpoint.async", K::Bool, "true", "write in the background after a host snapshot"),
      choice("checkpoint.on_error", "stop", {"stop", "continue"},
             "a failed save (e.g. disk full): stop the run, or warn and go on"),
  };
}

std::string number(double v) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%g", v);
  return buf;
}

// The recipe: the model, the optimizer, the schedule, the loss and the augmentation, the global
// batch, the seed and the precision; not where training started from (model.init_from), nor
// how the optimizer state is spread over the ranks (optim.zero: the same update either way).
std::vector<KeySpec> with_recipe_flags(std::vector<KeySpec> keys) {
  for (KeySpec& k : keys) {
    const std::string section = k.path.substr(0, k.path.find('.'));
    k.recipe = (section == "model" || section == "optim" || section == "schedule" ||
                section == "loss" || section == "aug" || k.path == "data.batch_size" ||
                k.path == "train.seed" || k.path == "precision.backend") &&
               k.path != "model.init_from" && k.path != "optim.zero";  // how, not what
  }
  return keys;
}

}  // namespace

const std::vector<KeySpec>& schema() {
  static const std::vector<KeySpec> keys = with_recipe_flags(build());
  return keys;
}

const KeySpec* find_key(const std::string& path) {
  for (const auto& k : schema())
    if (k.path == path) return &k;
  return nullptr;
}

std::vector<std::string> all_paths() {
  std::vector<std::string> out;
  for (const auto& k : schema()) out.push_back(k.path);
  return out;
}

std::string kind_name(const KeySpec& spec) {
  std::string range;
  bool lo = spec.min > -kInf, hi = spec.max < kInf;
  if (lo && hi)
    range = " in [" + number(spec.min) + ", " + number(spec.max) + "]";
  else if (lo)
    range = " >= " + number(spec.min);
  else if (hi)
    range = " <= " + number(spec.max);
  switch (spec.kind) {
    case Kind::Bool:
      return "a bool (true/false)";
    case Kind::Int:
      return "an integer" + range;
    case Kind::Float:
      return "a number" + range;
    case Kind::String:
      return "a string";
    case Kind::Enum: {
      std::string s = "one of ";
      for (size_t i = 0; i < spec.choices.size(); ++i) s += (i ? "|" : "") + spec.choices[i];
      return s;
    }
    case Kind::IntList:
      return "a list of integers" + (range.empty() ? "" : ", each" + range);
    case Kind::FloatList:
      return "a list of numbers" + (range.empty() ? "" : ", each" + range);
    case Kind::StringList:
      return "a list of strings";
  }
  return "?";
}

}  // namespace coatnet::config
