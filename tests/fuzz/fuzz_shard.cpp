// data/shard.h: the shard reader on shards whose contents lie — record offsets, shapes, label
// offsets and indices, counts and attributes drawn from the fuzzer's bytes, written as a
// well-formed HDF5 file — then opened and every record read, as the loader and `coatnet data
// verify` do. The contents are what this project's code interprets; raw damaged HDF5 structure
// reaches libhdf5's own parser first (fuzzing that found faults in libhdf5 1.10.8 itself:
// README "Fuzzing").
#include <fuzzer/FuzzedDataProvider.h>

#include <cstdint>
#include <exception>
#include <string>
#include <vector>

#include "data/hdf5_util.h"
#include "data/shard.h"
#include "fuzz_input.h"

namespace {

using namespace coatnet::data;

template <typename T>
std::vector<T> some(FuzzedDataProvider& in, size_t max_len, T lo, T hi) {
  std::vector<T> v(in.ConsumeIntegralInRange<size_t>(0, max_len));
  for (T& x : v) x = in.ConsumeIntegralInRange<T>(lo, hi);
  return v;
}

void write_lying_shard(const std::string& path, FuzzedDataProvider& in) {
  h5::Id file = h5::create_file(path);
  const auto records = in.ConsumeIntegralInRange<int64_t>(0, 6);
  const bool multi = in.ConsumeBool();
  h5::write_int_attr(file, "format_version", in.ConsumeBool() ? kFormatVersion : 2);
  h5::write_int_attr(file, "num_classes", in.ConsumeIntegralInRange<int64_t>(-2, 20));
  h5::write_strings_attr(file, "class_names", {in.ConsumeRandomLengthString(8)});
  h5::write_string_attr(file, "source", in.ConsumeRandomLengthString(8));
  h5::write_int_attr(file, "multi_label", multi);
  h5::write_int_attr(file, "bytes_xxh3", in.ConsumeIntegral<int64_t>());
  h5::write_int_attr(file, "records", in.ConsumeBool() ? records : in.ConsumeIntegral<int8_t>());
  h5::Id images(H5Gcreate2(file, "images", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT), H5Gclose);
  h5::write_string_attr(images, "encoding", in.ConsumeBool() ? "jpeg" : "raw");
  std::vector<uint64_t> offsets = some<uint64_t>(in, records + 2, 0, 64);
  if (in.ConsumeBool()) offsets.resize(records + 1);  // mostly the right count
  h5::write_all(images, "offsets", offsets, {offsets.size()});
  const hsize_t shape_rows = in.ConsumeBool() ? records : in.ConsumeIntegralInRange<int>(0, 8);
  std::vector<uint32_t> shape(shape_rows * 3);
  for (uint32_t& x : shape) x = in.ConsumeIntegral<uint32_t>();
  h5::write_all(images, "shape", shape, {shape_rows, 3});
  h5::Id labels(H5Gcreate2(file, "labels", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT), H5Gclose);
  if (multi) {
    const std::vector<uint64_t> lo = some<uint64_t>(in, records + 2, 0, 12);
    const std::vector<int32_t> idx = some<int32_t>(in, 12, -3, 30);
    h5::write_all(labels, "offsets", lo, {lo.size()});
    h5::write_all(labels, "indices", idx, {idx.size()});
    if (in.ConsumeBool()) {
      const std::vector<uint8_t> w = some<uint8_t>(in, 12, 0, 255);
      h5::write_all(labels, "weights", std::vector<float>(w.begin(), w.end()), {w.size()});
    }
  } else {
    const std::vector<int32_t> cls = some<int32_t>(in, records + 1, -3, 30);
    h5::write_all(labels, "class", cls, {cls.size()});
  }
  const std::vector<uint8_t> bytes = in.ConsumeRemainingBytes<uint8_t>();
  h5::write_all(images, "bytes", bytes, {bytes.size()});
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  coatnet::fuzz::InputFile file(nullptr, 0);
  FuzzedDataProvider in(data, size);
  try {
    write_lying_shard(file.path(), in);
  } catch (const std::exception&) {
    return 0;  // not a shard we could write: nothing to read
  }
  try {
    Shard shard(file.path());
    for (int64_t i = 0; i < shard.size(); ++i) {
      const Record r = shard.read(i);
      (void)r;
    }
    checksum_bytes(shard);
  } catch (const std::exception&) {
  }
  return 0;
}
