// The `coatnet` subcommands. Each takes (argc, argv) with argv[0] = the subcommand name and
// returns the process exit code: 0 ok, 1 error, 2 usage error.
#pragma once

#include <functional>
#include <string>
#include <vector>

namespace coatnet::config {
class Config;
}
namespace coatnet::dist {
class World;
}

namespace coatnet::cli {

int cmd_info(int argc, char** argv);
int cmd_forward(int argc, char** argv);
int cmd_train(int argc, char** argv);
int cmd_eval(int argc, char** argv);
int cmd_plot(int argc, char** argv);
int cmd_plugins(int argc, char** argv);
int cmd_pack(int argc, char** argv);
int cmd_data(int argc, char** argv);
int cmd_ckpt(int argc, char** argv);
int cmd_export(int argc, char** argv);
int cmd_plan(int argc, char** argv);

// `coatnet train` stopped by a signal after saving a checkpoint (EX_TEMPFAIL): the Slurm
// scripts requeue the job on it, and the next start resumes.
inline constexpr int kExitStopped = 75;

// Runs a command's work on this rank; an error is printed tagged with the rank and, under
// mpirun, ends the whole job at once (the other ranks may be waiting for this one).
int run_on_every_rank(dist::World& world, const char* command, const std::function<int()>& body);

class ArgParser;
// The options that select a model (--model, --image-size, --num-classes, --config, --set),
// shared by info and forward, and the resolved config they describe.
void add_model_options(ArgParser& parser);
config::Config model_config_from(const ArgParser& parser);

}  // namespace coatnet::cli
