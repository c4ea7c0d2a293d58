// coatnet plot RUN_DIR: PNG curves of a training run (loss, lr, accuracy, throughput).
#include <cstdio>

#include "cli/args.h"
#include "cli/commands.h"
#include "train/plot.h"

namespace coatnet::cli {

int cmd_plot(int argc, char** argv) {
  ArgParser p("plot",
              "Write PNG curves of a training run from RUN_DIR/metrics.jsonl: loss.png, lr.png, "
              "accuracy.png, throughput.png (into RUN_DIR). Works while the run is going on.");
  p.positional("RUN_DIR", "a run directory of coatnet train (runs/NAME)");
  return run_command(p, argc, argv, [&] {
    for (const std::string& f : train::plot_run(p.get("RUN_DIR"))) std::printf("%s\n", f.c_str());
    return 0;
  });
}

}  // namespace coatnet::cli
