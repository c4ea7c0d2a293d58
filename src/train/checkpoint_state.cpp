#include "train/checkpoint_state.h"

#include <torch/nn/module.h>

#include "train/ema.h"
#include "train/flat_params.h"
#include "train/optim.h"
#include "train/precision.h"

namespace coatnet::train {

checkpoint::State TrainState::collect() const {
  checkpoint::State s;
  flat.save(s);
  optimizer.save(s);
  checkpoint::RankTensors buffers{"buffers", {}, nullptr};
  for (const auto& item : net.named_buffers(/*recurse=*/true))
    buffers.tensors.emplace_back(item.key(), item.value());
  s.per_rank.push_back(std::move(buffers));
  if (ema) ema->save(s);
  s.precision = precision.name();
  s.precision_state = precision.state();
  return s;
}

std::string TrainState::restore(const checkpoint::State& loaded) const {
  optimizer.load(loaded);
  if (loaded.precision == precision.name()) {
    precision.load_state(loaded.precision_state);
    return "";
  }
  if (loaded.precision_state.empty()) return "";
  return "precision was " + loaded.precision + ", now " + precision.name() +
         ": its state (loss scale) starts fresh";
}

}  // namespace coatnet::train
