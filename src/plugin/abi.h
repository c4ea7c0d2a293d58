// The plugin ABI (docs/ARCHITECTURE.md "Plugins"): each backends/* folder builds to a shared
// library that exports one symbol, `coatnet_plugin` (a Boost.DLL alias), returning its Descriptor.
// The loader checks `abi` before anything else, so a plugin built against another version of these
// interfaces is refused with a message instead of crashing. Bump COATNET_PLUGIN_ABI whenever an
// interface a plugin implements (Precision, Comm, CheckpointBackend) or its create() arguments
// change.
//
//   // in a plugin:
//   const coatnet::plugin::Descriptor* describe() {
//     static const coatnet::plugin::Descriptor d{COATNET_PLUGIN_ABI, "precision", "bf16", "1.0",
//                                                "autocast to bfloat16", &create};
//     return &d;
//   }
//   COATNET_PLUGIN(describe)
#pragma once

#include <boost/dll/alias.hpp>

#define COATNET_PLUGIN_ABI 5

namespace coatnet::plugin {

struct Descriptor {
  int abi;              // COATNET_PLUGIN_ABI when the plugin was built
  const char* kind;     // "precision" | "comm" | "checkpoint"
  const char* name;     // what the config names it by, e.g. "bf16"
  const char* version;  // the plugin's own version
  const char* summary;  // one line for `coatnet plugins`
  // A new object implementing the kind's interface (the caller owns it); `args` points to the
  // kind's argument struct (precision: ScalerOptions).
  void* (*create)(const void* args);
};

using DescribeFn = const Descriptor*();

}  // namespace coatnet::plugin

#define COATNET_PLUGIN(describe_fn) BOOST_DLL_ALIAS(describe_fn, coatnet_plugin)
