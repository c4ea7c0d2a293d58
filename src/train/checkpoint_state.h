// The training state as a checkpoint holds it (checkpoint/state.h), collected from the objects
// that own it: FlatParams ("params" and the layout), AdamW (moments, step count), the EMA, the
// model's buffers (every rank's own BatchNorm statistics) and the precision plugin's state.
//
//   TrainState ts{*net, flat, optimizer, ema.get(), *precision};
//   ckpt.save(point, ts.collect());
//   checkpoint::State s = ts.collect(); ckpt.load(dir, s); log(ts.restore(s));
#pragma once

#include <string>

#include "checkpoint/state.h"

namespace torch::nn {
class Module;
}

namespace coatnet::train {

class FlatParams;
class AdamW;
class ModelEma;
class Precision;

struct TrainState {
  torch::nn::Module& net;
  FlatParams& flat;
  AdamW& optimizer;
  ModelEma* ema;  // optional
  Precision& precision;

  // The tensors (live: a load fills them in place) and the numbers as they are now.
  checkpoint::State collect() const;
  // After a load: the numbers back to their owners. Returns a line for the log ("" if none).
  std::string restore(const checkpoint::State& loaded) const;
};

}  // namespace coatnet::train
