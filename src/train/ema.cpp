#include "train/ema.h"

#include <ATen/ATen.h>
#include <torch/nn/module.h>

#include <stdexcept>

namespace coatnet::train {

ModelEma::ModelEma(FlatParams& flat, torch::nn::Module& model, double decay)
    : ModelEma(flat, model, decay, dist::Partition{0, 1, flat.numel()}, nullptr) {}

ModelEma::ModelEma(FlatParams& flat, torch::nn::Module& model, double decay, dist::Partition part,
                   dist::Comm* comm)
    : flat_(flat), decay_(decay), part_(part), comm_(comm) {
  if (part_.sharded() && !comm_)
    throw std::invalid_argument("ModelEma: a sharded EMA needs the comm to gather it");
  values = owned_live().detach().clone();
  for (const auto& item : model.named_buffers(/*recurse=*/true)) {
    const at::Tensor& b = item.value();
    if (!b.is_floating_point()) continue;  // e.g. BatchNorm's num_batches_tracked
    buffer_names.push_back(item.key());
    live_buffers.push_back(b);
    buffers.push_back(b.detach().clone());
  }
}

void ModelEma::save(checkpoint::State& state) {
  state.flat.push_back({"ema", values,
                        [this] {
                          values.copy_(owned_live());
                          return std::string(
                              "the checkpoint has no EMA: it starts from the loaded weights");
                        },
                        part_.begin(), part_.sharded() ? flat_.numel() : -1});
  checkpoint::RankTensors rows{"ema_buffers", {}, [this] {
                                 for (size_t i = 0; i < buffers.size(); ++i)
                                   buffers[i].copy_(live_buffers[i]);
                                 return std::string();
                               }};
  for (size_t i = 0; i < buffers.size(); ++i)
    rows.tensors.emplace_back(buffer_names[i], buffers[i]);
  state.per_rank.push_back(std::move(rows));
}

void ModelEma::update(const at::Tensor& found_inf) {
  at::NoGradGuard no_grad;
  // A skipped step moves nothing: the weight is 0 then, decided on the device.
  const at::Tensor w = (1 - decay_) * (1 - found_inf);
  values.lerp_(owned_live(), w);
  for (size_t i = 0; i < buffers.size(); ++i)
    buffers[i].lerp_(live_buffers[i], w.to(buffers[i].dtype()));
}

at::Tensor ModelEma::owned_live() const {
  return flat_.values.narrow(0, part_.begin(), part_.shard);
}

void ModelEma::swap() {
  at::NoGradGuard no_grad;
  if (!part_.sharded()) {
    at::Tensor tmp = flat_.values.clone();
    flat_.values.copy_(values);
    values.copy_(tmp);
  } else if (!swapped_out_.defined()) {  // swap in: every rank's EMA range, gathered
    swapped_out_ = flat_.values.clone();
    owned_live().copy_(values);
    comm_->allgather_inplace_async(flat_.values, part_.shard, "EMA all-gather (ZeRO-1)")->wait();
  } else {  // swap back: the live weights as they were
    flat_.values.copy_(swapped_out_);
    swapped_out_ = at::Tensor();
  }
  at::Tensor tmp;
  for (size_t i = 0; i < buffers.size(); ++i) {
    tmp = live_buffers[i].clone();
    live_buffers[i].copy_(buffers[i]);
    buffers[i].copy_(tmp);
  }
}

}  // namespace coatnet::train
