#include "data/idx.h"

#include <zlib.h>

#include <algorithm>
#include <cstdint>
#include <stdexcept>

namespace coatnet::data {

namespace {

class GzFile {
 public:
  explicit GzFile(const std::string& path) : f_(gzopen(path.c_str(), "rb")), path_(path) {
    if (!f_) throw std::runtime_error(path + ": cannot open");
  }
  ~GzFile() { gzclose(f_); }
  // Reads exactly n bytes (gzread decompresses .gz and passes other files through).
  void read(void* buf, size_t n, const char* what) {
    auto* p = static_cast<char*>(buf);
    while (n > 0) {
      int chunk = static_cast<int>(std::min<size_t>(n, 1 << 30));
      int r = gzread(f_, p, chunk);
      if (r <= 0)
        throw std::runtime_error(path_ + ": truncated or corrupt while reading the " + what);
      p += r;
      n -= static_cast<size_t>(r);
    }
  }

 private:
  gzFile f_;
  std::string path_;
};

uint32_t big_endian(const unsigned char* b) {
  return (uint32_t{b[0]} << 24) | (uint32_t{b[1]} << 16) | (uint32_t{b[2]} << 8) | b[3];
}

}  // namespace

IdxArray read_idx(const std::string& path) {
  GzFile f(path);
  unsigned char magic[4];
  f.read(magic, 4, "header");
  if (magic[0] != 0 || magic[1] != 0)
    throw std::runtime_error(path + ": not an IDX file (magic bytes " + std::to_string(magic[0]) +
                             " " + std::to_string(magic[1]) + ", expected 0 0)");
  if (magic[2] != 0x08)
    throw std::runtime_error(path + ": IDX data type 0x" + std::to_string(magic[2]) +
                             " is not unsigned byte (0x08)");
  int ndims = magic[3];
  if (ndims < 1 || ndims > 4)
    throw std::runtime_error(path + ": IDX with " + std::to_string(ndims) + " dimensions");
  IdxArray out;
  uint64_t total = 1;
  for (int d = 0; d < ndims; ++d) {
    unsigned char b[4];
    f.read(b, 4, "header");
    out.dims.push_back(big_endian(b));
    total *= out.dims.back();
    if (total > (uint64_t{1} << 36)) throw std::runtime_error(path + ": IDX dimensions too large");
  }
  // Grown as the bytes arrive: a header that claims more than the file holds ends in "truncated"
  // after reading what is there, not in an allocation of what the header says (fuzz_idx).
  constexpr uint64_t kChunk = uint64_t{64} << 20;
  for (uint64_t done = 0; done < total;) {
    const uint64_t n = std::min(kChunk, total - done);
    out.data.resize(done + n);
    f.read(out.data.data() + done, n, "data");
    done += n;
  }
  return out;
}

}  // namespace coatnet::data
