// SyncBatchNorm: in training, every BatchNorm of the model normalises with the mean and
// variance of the global batch (all ranks), and its backward reduces the two per-channel sums
// it needs, so W ranks × batch B compute what one rank with batch W·B would. Running
// statistics are updated from the global figures, identically on every rank.
//
//   enable_sync_batch_norm(comm);   // dist.sync_bn: true; affects model::batch_norm()
#pragma once

#include <ATen/core/Tensor.h>

namespace torch::nn {
class BatchNorm2dImpl;
}

namespace coatnet::dist {

class Comm;

void enable_sync_batch_norm(Comm& comm);
void disable_sync_batch_norm();

// The synchronised forward of one BatchNorm in training (exposed for tests).
at::Tensor sync_batch_norm(torch::nn::BatchNorm2dImpl& bn, const at::Tensor& x, Comm& comm);

}  // namespace coatnet::dist
