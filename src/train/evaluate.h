// Evaluation over the whole validation set: top-1 / top-5 accuracy (as fractions) and the
// mean loss, each sample counted exactly once across ranks — the sampler pads the last batch
// with masked rows and the counts are summed over ranks.
// Multi-label data: top-k = the share of samples with a true label among the k best scores.
// The loss is cross-entropy (single-label) or mean sigmoid BCE (multi-label), without smoothing.
#pragma once

#include <ATen/core/Tensor.h>

#include <cstdint>

namespace coatnet::data {
class Loader;
}
namespace coatnet::dist {
class Comm;
}
namespace coatnet::model {
class CoAtNetImpl;
}

namespace coatnet::train {

struct EvalResult {
  double top1 = 0, top5 = 0, loss = 0;
  int64_t samples = 0;  // counted over all ranks
  int64_t corrupt = 0;  // records that failed to decode (not counted in samples)
  double seconds = 0;
};

// Runs one pass over `loader` (restarted at its first batch) in eval mode.
EvalResult evaluate(model::CoAtNetImpl& net, data::Loader& loader, dist::Comm& comm,
                    const at::Device& device);

}  // namespace coatnet::train
