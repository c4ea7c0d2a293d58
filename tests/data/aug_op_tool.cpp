// Every RandAugment op at the given magnitudes, in both directions, on one raw H×W×C uint8
// image, for the comparison with torchvision (tests/data/randaugment_vs_torchvision.py). One
// process per image: starting one per op would spend the test's time loading libraries.
// usage: aug_op_tool H W C IMAGE.raw OUT_DIR M[,M...]  -> OUT_DIR/OP_M_SIGN.raw (SIGN: p or m)
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <iterator>
#include <sstream>
#include <string>
#include <vector>

#include "data/randaugment.h"

int main(int argc, char** argv) {
  using namespace coatnet::data;
  if (argc != 7) {
    std::fprintf(stderr, "usage: aug_op_tool H W C IMAGE.raw OUT_DIR M[,M...]\n");
    return 2;
  }
  const int h = std::atoi(argv[1]), w = std::atoi(argv[2]), c = std::atoi(argv[3]);
  std::ifstream in(argv[4], std::ios::binary);
  const std::vector<uint8_t> image((std::istreambuf_iterator<char>(in)), {});
  if (image.size() != static_cast<size_t>(h) * w * c) {
    std::fprintf(stderr, "aug_op_tool: %s holds %zu bytes, not %d×%d×%d\n", argv[4], image.size(),
                 h, w, c);
    return 1;
  }
  std::stringstream list(argv[6]);
  for (std::string m; std::getline(list, m, ',');)
    for (int op = 0; op < kNumAugOps; ++op)
      for (int sign : {1, -1}) {
        std::vector<uint8_t> img = image;
        apply_aug_op(static_cast<AugOp>(op), std::atoi(m.c_str()), sign, img.data(), h, w, c);
        const std::string out = std::string(argv[5]) + "/" + aug_op_name(static_cast<AugOp>(op)) +
                                "_" + m + "_" + (sign > 0 ? "p" : "m") + ".raw";
        std::ofstream(out, std::ios::binary)
            .write(reinterpret_cast<const char*>(img.data()),
                   static_cast<std::streamsize>(img.size()));
      }
  return 0;
}
