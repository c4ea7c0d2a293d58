#include "train/precision.h"

#include "plugin/registry.h"

namespace coatnet::train {

std::unique_ptr<Precision> make_precision(const std::string& name, const ScalerOptions& scaler) {
  return plugin::create<Precision>("precision", name, &scaler, "precision.backend");
}

}  // namespace coatnet::train
