#include "train/ema.h"

#include <ATen/ATen.h>
#include <torch/nn/module.h>

namespace coatnet::train {

ModelEma::ModelEma(FlatParams& flat, torch::nn::Module& model, double decay)
    : flat_(flat), decay_(decay) {
  values = flat.values.detach().clone();
  for (const auto& item : model.named_buffers(/*recurse=*/true)) {
    const at::Tensor& b = item.value();
    if (!b.is_floating_point()) continue;  // e.g. BatchNorm's num_batches_tracked
    buffer_names.push_back(item.key());
    live_buffers.push_back(b);
    buffers.push_back(b.detach().clone());
  }
}

void ModelEma::save(checkpoint::State& state) {
  state.flat.push_back({"ema", values, [this] {
                          values.copy_(flat_.values);
                          return std::string(
                              "the checkpoint has no EMA: it starts from the loaded weights");
                        }});
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
  values.lerp_(flat_.values, w);
  for (size_t i = 0; i < buffers.size(); ++i)
    buffers[i].lerp_(live_buffers[i], w.to(buffers[i].dtype()));
}

void ModelEma::swap() {
  at::NoGradGuard no_grad;
  at::Tensor tmp = flat_.values.clone();
  flat_.values.copy_(values);
  values.copy_(tmp);
  for (size_t i = 0; i < buffers.size(); ++i) {
    tmp = live_buffers[i].clone();
    live_buffers[i].copy_(buffers[i]);
    buffers[i].copy_(tmp);
  }
}

}  // namespace coatnet::train
