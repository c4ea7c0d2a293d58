// The model's trainable parameters as views into one contiguous fp32 buffer, and their
// gradients as views into another, in the order backward produces gradients (the reverse of
// registration order). So gradient buckets are contiguous ranges, and the optimizer, the EMA
// and the gradient norm each work on a few large tensors instead of hundreds of small ones.
// The same layout is what ZeRO-1 (train/zero.h) and the sharded checkpoints split evenly across
// ranks.
//
//   FlatParams flat(*net);         // net's parameters now live in flat.values
//   FlatParams flat(*net, world);  // the same, padded to `world` equal shards (ZeRO-1)
//   flat.grads.zero_();            // every p.grad() at once (after GradBuckets set the views)
#pragma once

#include <ATen/core/Tensor.h>

#include <string>
#include <vector>

#include "checkpoint/state.h"

namespace torch::nn {
class Module;
}

namespace coatnet::train {

struct FlatEntry {
  std::string name;  // the timm state_dict name
  at::Tensor param;
  int64_t offset = 0, numel = 0;
  // AdamW decays weights only: norms, biases and relative-position bias tables are exempt
  // (timm's rule: parameters with fewer than 2 dimensions, plus bias tables by name).
  bool decay = true;
};

class FlatParams {
 public:
  // Every parameter starts at a multiple of 16 elements (64 bytes), as if it had been allocated
  // alone: kernels that read a parameter with 16-byte vector loads need it (cuDNN's NHWC batch
  // norm in fp32 and fp16 faulted with "misaligned address" on an H100 with packed offsets). The
  // padding between parameters is zero and stays zero.
  static constexpr int64_t kAlignElements = 16;
  // The elements a parameter of `numel` takes in the flat buffer, with its padding.
  static int64_t aligned(int64_t numel) {
    return (numel + kAlignElements - 1) / kAlignElements * kAlignElements;
  }
  // With `shards` > 1 the buffers end with zero padding up to a multiple of shards · 16
  // elements, so that they split into `shards` equal, aligned ranges.
  explicit FlatParams(torch::nn::Module& model, int shards = 1);
  std::vector<FlatEntry> entries;  // in flat (backward) order
  at::Tensor values;               // fp32, every parameter
  at::Tensor grads;                // fp32, same layout (views are set up by GradBuckets)
  int64_t numel() const { return values.numel(); }  // with the padding
  int64_t parameter_count() const;                  // without it
  std::vector<at::Tensor> params() const;
  // Adds the layout and "params" to a checkpoint's state (checkpoint/state.h).
  void save(checkpoint::State& state) const;
  std::vector<int64_t> offsets() const;
};

}  // namespace coatnet::train
