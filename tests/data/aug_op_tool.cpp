// One RandAugment op on a raw H×W×C uint8 image, stdin to stdout, for the comparison with
// torchvision (tests/data/randaugment_vs_torchvision.py).
// usage: aug_op_tool OP M SIGN H W C   (OP by name: shear_x, rotate, ...; M 0..30; SIGN ±1)
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "data/randaugment.h"

int main(int argc, char** argv) {
  using namespace coatnet::data;
  if (argc != 7) {
    std::fprintf(stderr, "usage: aug_op_tool OP M SIGN H W C < image.raw > out.raw\n");
    return 2;
  }
  int op = -1;
  for (int i = 0; i < kNumAugOps; ++i)
    if (argv[1] == std::string(aug_op_name(static_cast<AugOp>(i)))) op = i;
  if (op < 0) {
    std::fprintf(stderr, "aug_op_tool: unknown op '%s'\n", argv[1]);
    return 2;
  }
  const int m = std::atoi(argv[2]), sign = std::atoi(argv[3]);
  const int h = std::atoi(argv[4]), w = std::atoi(argv[5]), c = std::atoi(argv[6]);
  std::vector<uint8_t> img(static_cast<size_t>(h) * w * c);
  if (std::fread(img.data(), 1, img.size(), stdin) != img.size()) {
    std::fprintf(stderr, "aug_op_tool: expected %zu bytes on stdin\n", img.size());
    return 1;
  }
  apply_aug_op(static_cast<AugOp>(op), m, sign, img.data(), h, w, c);
  std::fwrite(img.data(), 1, img.size(), stdout);
  return 0;
}
