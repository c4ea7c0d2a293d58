#include "train/flat_params.h"

#include <torch/nn/module.h>

#include <stdexcept>
#include <string>

namespace coatnet::train {

namespace {
bool decays(const std::string& name, const at::Tensor& p) {
  if (p.dim() < 2) return false;
  return name.find("relative_position_bias_table") == std::string::npos;
}
}  // namespace

FlatParams::FlatParams(torch::nn::Module& model, int shards) {
  if (shards < 1) throw std::invalid_argument("FlatParams: shards = " + std::to_string(shards));
  auto named = model.named_parameters(/*recurse=*/true);
  std::vector<std::pair<std::string, at::Tensor>> list;
  for (const auto& item : named)
    if (item.value().requires_grad()) list.emplace_back(item.key(), item.value());
  if (list.empty())
    throw std::invalid_argument("FlatParams: the model has no trainable parameters");
  const at::TensorOptions opts = list.front().second.options().dtype(at::kFloat);
  int64_t total = 0;
  for (auto it = list.rbegin(); it != list.rend(); ++it) {
    if (it->second.scalar_type() != at::kFloat)
      throw std::invalid_argument("FlatParams: parameter " + it->first +
                                  " is not float32 (master weights are fp32)");
    entries.push_back(
        {it->first, it->second, total, it->second.numel(), decays(it->first, it->second)});
    total += aligned(it->second.numel());
  }
  const int64_t unit = kAlignElements * shards;
  total = (total + unit - 1) / unit * unit;
  // Zeros: the padding between parameters must stay 0 (no gradient, no update, no norm).
  values = at::zeros({total}, opts);
  grads = at::zeros({total}, opts);
  at::NoGradGuard no_grad;
  for (FlatEntry& e : entries) {
    at::Tensor view = values.narrow(0, e.offset, e.numel).view(e.param.sizes());
    view.copy_(e.param);
    // The module keeps the same Variable; only its storage moves into the flat buffer.
    e.param.set_data(view);
  }
}

std::vector<at::Tensor> FlatParams::params() const {
  std::vector<at::Tensor> out;
  for (const FlatEntry& e : entries) out.push_back(e.param);
  return out;
}

int64_t FlatParams::parameter_count() const {
  int64_t n = 0;
  for (const FlatEntry& e : entries) n += e.numel;
  return n;
}

std::vector<int64_t> FlatParams::offsets() const {
  std::vector<int64_t> out;
  for (const FlatEntry& e : entries) out.push_back(e.offset);
  return out;
}

void FlatParams::save(checkpoint::State& state) const {
  state.layout.clear();
  for (const FlatEntry& e : entries)
    state.layout.push_back({e.name, e.offset, e.param.sizes().vec()});
  state.flat.push_back({"params", values, nullptr});
}

}  // namespace coatnet::train
