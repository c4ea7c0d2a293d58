// coatnet: one CLI, git-style subcommands.
//   cli/cmd_info.cpp      info     parameters, MACs and stage shapes of a model
//   cli/cmd_forward.cpp   forward  run a model on a safetensors input (weights and parity checks)
//   cli/cmd_train.cpp     train    data-parallel training (src/train)
//   cli/cmd_eval.cpp      eval     top-1/top-5 on the validation shards
//   cli/cmd_plot.cpp      plot     PNG curves of a run
//   cli/cmd_plugins.cpp   plugins  the plugins found, with kind and version
//   cli/cmd_pack.cpp      pack     pack a dataset into HDF5 shards (parallel under mpirun)
//   cli/cmd_data.cpp      data     inspect and verify packed shards
//   cli/cmd_ckpt.cpp      ckpt     list, verify and describe checkpoints
//   cli/cmd_export.cpp    export   a checkpoint's weights as safetensors
//   cli/cmd_plan.cpp      plan     predicted scaling from an alpha-beta model of the buckets
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "cli/commands.h"
#include "util/text.h"

namespace {

struct Command {
  const char* name;
  const char* summary;
  int (*run)(int, char**);
};

const Command kCommands[] = {
    {"info", "parameters, GMACs and per-stage output shapes of a model", coatnet::cli::cmd_info},
    {"forward", "run a model on a safetensors input and write the logits",
     coatnet::cli::cmd_forward},
    {"pack", "pack a dataset into HDF5 shards, in parallel under mpirun", coatnet::cli::cmd_pack},
    {"data", "inspect or verify packed shards", coatnet::cli::cmd_data},
    {"train", "train a model data-parallel (mpirun -np N coatnet train --config FILE)",
     coatnet::cli::cmd_train},
    {"eval", "top-1/top-5 of weights on the validation shards", coatnet::cli::cmd_eval},
    {"plot", "PNG curves (loss, lr, accuracy, throughput) of a run directory",
     coatnet::cli::cmd_plot},
    {"ckpt", "list, verify or describe checkpoints", coatnet::cli::cmd_ckpt},
    {"export", "write a checkpoint's weights as safetensors (timm names)",
     coatnet::cli::cmd_export},
    {"plan", "predicted step time and scaling efficiency from 8 to 1,024 GPUs (alpha-beta model)",
     coatnet::cli::cmd_plan},
    {"plugins", "list the plugins found (precision, comm, checkpoint backends)",
     coatnet::cli::cmd_plugins},
};

std::string usage() {
  std::string out =
      "usage: coatnet <command> [options]   (coatnet <command> --help for its options)\n\n"
      "CoAtNet training and tools, data-parallel under mpirun.\n\ncommands:\n";
  for (const auto& c : kCommands) {
    std::string line = std::string("  ") + c.name;
    line.append(12 - line.size(), ' ');
    out += line + c.summary + "\n";
  }
  return out;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) {
    std::fputs(usage().c_str(), stderr);
    return 2;
  }
  std::string name = argv[1];
  if (name == "--help" || name == "-h" || name == "help") {
    std::fputs(usage().c_str(), stdout);
    return 0;
  }
  if (name == "--version") {
    std::puts("coatnet " COATNET_VERSION);
    return 0;
  }
  std::vector<std::string> names;
  for (const auto& c : kCommands) {
    if (name == c.name) return c.run(argc - 1, argv + 1);
    names.push_back(c.name);
  }
  std::fprintf(stderr, "coatnet: unknown command '%s'%s\n\n%s", name.c_str(),
               coatnet::text::did_you_mean(name, names).c_str(), usage().c_str());
  return 2;
}
