// ArgParser, the command line of every `coatnet` subcommand: the values it hands over, and the
// exact usage errors (exit 2) and help text users see — kept as they were when the parsing moved
// to CLI11.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "cli/args.h"

using coatnet::cli::ArgParser;
using coatnet::cli::HelpRequested;
using coatnet::cli::UsageError;

namespace {

ArgParser pack_like() {
  ArgParser p("pack idx", "Packs IDX files into HDF5 shards.");
  p.positional("IMAGES", "the IDX image file")
      .positional("LABELS", "the IDX label file")
      .required("out", "DIR", "where the shards go")
      .option("shard-size", "N", "records per shard", "1000")
      .option("lr", "X", "a number that may be negative")
      .repeated("set", "KEY=VALUE", "a config override")
      .flag("json", "print JSON");
  return p;
}

// Parses `args` (after the command name); returns the usage error, "help", or "ok".
std::string outcome(ArgParser& p, std::vector<std::string> args) {
  args.insert(args.begin(), "cmd");
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  try {
    p.parse(static_cast<int>(argv.size()), argv.data());
  } catch (const HelpRequested&) {
    return "help";
  } catch (const UsageError& e) {
    return e.what();
  }
  return "ok";
}

}  // namespace

TEST(ArgParser, ValuesSpacedInlineDefaultAndRepeated) {
  ArgParser p = pack_like();
  ASSERT_EQ(outcome(p, {"a.idx", "--out", "o", "b.idx", "--set=x=1", "--set", "y=2", "--json",
                        "--lr", "-0.5"}),
            "ok");
  EXPECT_EQ(p.get("IMAGES"), "a.idx");
  EXPECT_EQ(p.get("LABELS"), "b.idx");
  EXPECT_EQ(p.get("out"), "o");
  EXPECT_EQ(p.get("shard-size"), "1000");  // the default
  EXPECT_FALSE(p.has("shard-size"));
  EXPECT_EQ(p.get_int("shard-size"), 1000);
  EXPECT_EQ(p.get("lr"), "-0.5");  // a value that starts with '-' is a value
  EXPECT_EQ(p.all("set"), (std::vector<std::string>{"x=1", "y=2"}));
  EXPECT_TRUE(p.has("json"));
  EXPECT_TRUE(p.all("shard-size").empty());
}

TEST(ArgParser, VariadicPositionalTakesEveryValue) {
  ArgParser p("data inspect", "Shows shards.");
  p.positional("SHARDS", "shard files", /*variadic=*/true).flag("json", "print JSON");
  std::vector<std::string> args{"data inspect", "a.h5", "--json", "b.h5", "c.h5"};
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  p.parse(static_cast<int>(argv.size()), argv.data());
  EXPECT_EQ(p.all("SHARDS"), (std::vector<std::string>{"a.h5", "b.h5", "c.h5"}));
  ArgParser none("data inspect", "Shows shards.");
  none.positional("SHARDS", "shard files", true);
  EXPECT_EQ(outcome(none, {}), "coatnet data inspect: missing SHARDS");
}

TEST(ArgParser, UsageErrorsNameTheArgument) {
  auto error = [](std::vector<std::string> args) {
    ArgParser p = pack_like();
    return outcome(p, std::move(args));
  };
  const std::vector<std::string> ok{"a", "b", "--out", "o"};
  auto with = [&](std::vector<std::string> more) {
    std::vector<std::string> args = ok;
    args.insert(args.end(), more.begin(), more.end());
    return args;
  };
  EXPECT_EQ(error(with({"--shard-sise", "3"})),
            "coatnet pack idx: unknown option '--shard-sise' (did you mean '--shard-size'?)");
  EXPECT_EQ(error(with({"--zzz=1"})), "coatnet pack idx: unknown option '--zzz'");
  EXPECT_EQ(error(with({"--json=1"})), "coatnet pack idx: --json takes no value");
  EXPECT_EQ(error(with({"--shard-size"})), "coatnet pack idx: --shard-size needs N");
  EXPECT_EQ(error(with({"--shard-size", "1", "--shard-size=2"})),
            "coatnet pack idx: --shard-size given twice");
  EXPECT_EQ(error(with({"c"})), "coatnet pack idx: unexpected argument 'c'");
  EXPECT_EQ(error({"a", "--out", "o"}), "coatnet pack idx: missing LABELS");
  EXPECT_EQ(error({"a", "b"}), "coatnet pack idx: --out DIR is required");
  ArgParser p = pack_like();
  ASSERT_EQ(outcome(p, with({"--shard-size", "ten"})), "ok");
  try {
    p.get_int("shard-size");
    FAIL() << "get_int accepted 'ten'";
  } catch (const UsageError& e) {
    EXPECT_STREQ(e.what(), "coatnet pack idx: --shard-size expects an integer, got 'ten'");
  }
}

TEST(ArgParser, HelpWinsOverEverythingElse) {
  for (const char* h : {"--help", "-h"}) {
    ArgParser p = pack_like();
    EXPECT_EQ(outcome(p, {"--bogus", h}), "help") << h;
    ArgParser q = pack_like();
    EXPECT_EQ(outcome(q, {h}), "help") << h << " without the required arguments";
  }
}

TEST(ArgParser, UsageText) {
  ArgParser p = pack_like();
  p.epilog("example: coatnet pack idx a b --out o");
  EXPECT_EQ(p.usage(),
            "usage: coatnet pack idx IMAGES LABELS --out DIR [--shard-size N] [--lr X] "
            "[--set KEY=VALUE ...] [--json]\n"
            "\n"
            "Packs IDX files into HDF5 shards.\n"
            "\n"
            "arguments:\n"
            "  IMAGES                    the IDX image file\n"
            "  LABELS                    the IDX label file\n"
            "options:\n"
            "  --out DIR                 where the shards go\n"
            "  --shard-size N            records per shard (default: 1000)\n"
            "  --lr X                    a number that may be negative\n"
            "  --set KEY=VALUE           a config override\n"
            "  --json                    print JSON\n"
            "  --help                    show this help\n"
            "\n"
            "example: coatnet pack idx a b --out o\n");
}
