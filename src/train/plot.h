// `coatnet plot RUN_DIR`: PNG curves from a run's metrics.jsonl — loss.png, lr.png,
// accuracy.png and throughput.png — drawn by a small rasteriser (axes, ticks, a 3×5 bitmap
// font), so plotting needs no Python and works on a cluster's login node.
#pragma once

#include <string>
#include <vector>

namespace coatnet::train {

struct Series {
  std::string label;
  std::vector<double> x, y;
  unsigned rgb = 0x1f77b4;
  bool points = false;  // markers instead of a line (sparse series such as evaluations)
};

// Writes a width×height PNG with one axis box holding `series`; throws naming the path.
void plot_png(const std::string& path, const std::string& title, const std::string& x_label,
              const std::vector<Series>& series, int width = 800, int height = 500);

// Reads RUN_DIR/metrics.jsonl and writes the four PNGs; returns their paths.
std::vector<std::string> plot_run(const std::string& run_dir);

}  // namespace coatnet::train
