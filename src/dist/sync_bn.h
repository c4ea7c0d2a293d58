// SyncBatchNorm: in training, every BatchNorm of the model normalises with the mean and
// variance of the global batch (all ranks), and its backward reduces the two per-channel sums
// it needs, so W ranks × batch B compute what one rank with batch W·B would. Running
// statistics are updated from the global figures, identically on every rank.
//
//   SyncBatchNormScope sync_bn(comm);   // dist.sync_bn: true; affects model::batch_norm()
//                                       // until sync_bn goes out of scope
#pragma once

#include <ATen/core/Tensor.h>

namespace torch::nn {
class BatchNorm2dImpl;
}

namespace coatnet::dist {

class Comm;

// While it lives, model::batch_norm() in training synchronises over `comm`. A scope rather than
// an on/off switch: a train() that ends by an exception cannot leave the override behind,
// pointing at a Comm that no longer exists.
class SyncBatchNormScope {
 public:
  explicit SyncBatchNormScope(Comm& comm);
  ~SyncBatchNormScope();
  SyncBatchNormScope(const SyncBatchNormScope&) = delete;
  SyncBatchNormScope& operator=(const SyncBatchNormScope&) = delete;
};

// The synchronised forward of one BatchNorm in training (exposed for tests).
at::Tensor sync_batch_norm(torch::nn::BatchNorm2dImpl& bn, const at::Tensor& x, Comm& comm);

}  // namespace coatnet::dist
