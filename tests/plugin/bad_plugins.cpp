// Two libraries the plugin loader must refuse, with the reason: a plugin built for another
// ABI (BAD_ABI defined) and a shared library that is not a coatnet plugin at all.
#ifdef BAD_ABI
#include "plugin/abi.h"

namespace {
void* create(const void*) {
  return nullptr;
}
const coatnet::plugin::Descriptor* describe() {
  static const coatnet::plugin::Descriptor d{
      999, "precision", "broken", "0.1", "built for another ABI", &create};
  return &d;
}
}  // namespace

COATNET_PLUGIN(describe)
#else
extern "C" int not_a_plugin() {
  return 42;
}
#endif
