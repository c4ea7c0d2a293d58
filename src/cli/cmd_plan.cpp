// coatnet plan: predicted step time, communication share and scaling efficiency of a model
// from 8 to 1,024 GPUs (or the counts given), from the α–β model of the bucket schedule
// (src/dist/plan.h) and a measured single-GPU step time.
#include <cstdio>
#include <stdexcept>
#include <string>

#include "cli/args.h"
#include "cli/commands.h"
#include "config/config.h"
#include "dist/plan.h"
#include "model/coatnet.h"
#include "util/json.h"
#include "util/text.h"

namespace coatnet::cli {

namespace {

// A positive number from an option or a list item, or an error naming it and the value.
double number(const std::string& text, const std::string& option) {
  size_t used = 0;
  double v = 0;
  try {
    v = std::stod(text, &used);
  } catch (const std::exception&) {
    used = 0;
  }
  if (used == 0 || used != text.size() || !(v > 0))
    throw std::invalid_argument(option + " = '" + text + "': expected a positive number");
  return v;
}

}  // namespace

int cmd_plan(int argc, char** argv) {
  ArgParser p("plan",
              "Predict the step time, the share of it spent waiting for the gradient "
              "all-reduce, and the scaling efficiency at each GPU count, from an alpha-beta "
              "model of the bucket schedule: ring all-reduce per bucket, started as backward "
              "produces it. --step-ms is one GPU's measured step without communication (e.g. "
              "step_s of a 1-rank run's metrics.jsonl).");
  add_model_options(p);
  p.option("step-ms", "MS", "compute time of one step on one GPU (forward, backward, update)", "")
      .option("gpus", "N,N,...", "GPU counts", "8,16,32,64,128,256,512,1024")
      .option("gpus-per-node", "G", "GPUs per node (the ring crosses the network beyond one)", "8")
      .option("link-gbps", "B", "network bandwidth per GPU between nodes, Gbit/s", "100")
      .option("node-gbps", "B", "bandwidth between the GPUs of a node (NVLink class), Gbit/s",
              "2400")
      .option("latency-us", "US", "per-message, per-hop latency (alpha), microseconds", "5")
      .option("bucket-mb", "MB", "gradient bucket size (dist.bucket_mb)", "25")
      .option("first-bucket-mb", "MB", "first bucket size (dist.first_bucket_mb)", "1")
      .flag("json", "print one JSON object on stdout");
  p.epilog("example: coatnet plan --model coatnet_0_224 --step-ms 180 --link-gbps 200");
  return run_command(p, argc, argv, [&] {
    if (p.get("step-ms").empty())
      throw std::invalid_argument(
          "--step-ms is needed: one GPU's step time without communication (run 1 rank and "
          "read step_s from its metrics.jsonl)");
    model::ModelSpec spec = model::spec_from_config(model_config_from(p));
    model::CoAtNet net(spec);
    const int64_t params = model::count_parameters(*net);
    dist::StepModel m;
    m.grad_bytes = 4.0 * static_cast<double>(params);
    m.compute_s = number(p.get("step-ms"), "--step-ms") / 1e3;
    m.gpus_per_node = static_cast<int>(number(p.get("gpus-per-node"), "--gpus-per-node"));
    m.link_gbps = number(p.get("link-gbps"), "--link-gbps");
    m.node_gbps = number(p.get("node-gbps"), "--node-gbps");
    m.latency_s = number(p.get("latency-us"), "--latency-us") / 1e6;
    m.bucket_bytes = number(p.get("bucket-mb"), "--bucket-mb") * (1 << 20);
    m.first_bucket_bytes = number(p.get("first-bucket-mb"), "--first-bucket-mb") * (1 << 20);
    std::vector<dist::PlanPoint> points;
    for (const std::string& g : text::split(p.get("gpus"), ','))
      points.push_back(dist::predict(m, static_cast<int>(number(g, "--gpus"))));
    if (p.has("json")) {
      json::Value out = json::Value::object();
      out["model"] = spec.name;
      out["params"] = params;
      out["grad_bytes"] = m.grad_bytes;
      out["buckets"] = static_cast<int64_t>(dist::bucket_sizes(m).size());
      out["step_ms_one_gpu"] = m.compute_s * 1e3;
      json::Value rows = json::Value::array();
      for (const auto& q : points) {
        json::Value r = json::Value::object();
        r["gpus"] = q.gpus;
        r["nodes"] = q.nodes;
        r["allreduce_ms"] = q.allreduce_s * 1e3;
        r["exposed_ms"] = q.exposed_s * 1e3;
        r["step_ms"] = q.step_s * 1e3;
        r["comm_share"] = q.comm_share;
        r["efficiency"] = q.efficiency;
        rows.push_back(r);
      }
      out["points"] = rows;
      std::puts(out.dump().c_str());
      return 0;
    }
    std::printf(
        "%s: %lld parameters, %.1f MB of fp32 gradients in %zu buckets; one GPU's step "
        "%.1f ms; network %.0f Gbit/s per GPU, %d GPUs per node\n",
        spec.name.c_str(), static_cast<long long>(params), m.grad_bytes / 1e6,
        dist::bucket_sizes(m).size(), m.compute_s * 1e3, m.link_gbps, m.gpus_per_node);
    std::printf("%6s %6s %14s %12s %10s %11s %11s\n", "GPUs", "nodes", "all-reduce ms",
                "exposed ms", "step ms", "comm share", "efficiency");
    for (const auto& q : points)
      std::printf("%6d %6d %14.2f %12.2f %10.2f %10.1f%% %10.1f%%\n", q.gpus, q.nodes,
                  q.allreduce_s * 1e3, q.exposed_s * 1e3, q.step_s * 1e3, 100 * q.comm_share,
                  100 * q.efficiency);
    return 0;
  });
}

}  // namespace coatnet::cli
