#include "model/safetensors.h"

#include <ATen/ATen.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <set>

#include "util/atomic_file.h"
#include "util/json.h"

namespace coatnet::model {

namespace {

constexpr uint64_t kMaxHeader = 100ull << 20;  // the format's own limit

struct DtypeInfo {
  const char* name;
  at::ScalarType type;
};
constexpr DtypeInfo kDtypes[] = {
    {"F64", at::kDouble}, {"F32", at::kFloat}, {"F16", at::kHalf},  {"BF16", at::kBFloat16},
    {"I64", at::kLong},   {"I32", at::kInt},   {"I16", at::kShort}, {"I8", at::kChar},
    {"U8", at::kByte},    {"BOOL", at::kBool},
};

at::ScalarType dtype_from_name(const std::string& name, const std::string& where) {
  for (const auto& d : kDtypes)
    if (name == d.name) return d.type;
  throw SafetensorsError(where + ": unsupported dtype '" + name + "'");
}

const char* dtype_name(at::ScalarType t) {
  for (const auto& d : kDtypes)
    if (t == d.type) return d.name;
  throw SafetensorsError(std::string("cannot write dtype ") + c10::toString(t) + " to safetensors");
}

class Fd {
 public:
  Fd(const std::string& path, int flags, mode_t mode = 0644)
      : fd_(::open(path.c_str(), flags, mode)) {}
  ~Fd() {
    if (fd_ >= 0) ::close(fd_);
  }
  int get() const { return fd_; }
  int release() {
    int f = fd_;
    fd_ = -1;
    return f;
  }

 private:
  int fd_;
};

void pread_all(int fd, void* buf, size_t n, uint64_t offset, const std::string& path) {
  auto* p = static_cast<char*>(buf);
  while (n > 0) {
    ssize_t r = ::pread(fd, p, n, static_cast<off_t>(offset));
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0)
      throw SafetensorsError(path + ": read failed at byte " + std::to_string(offset) + ": " +
                             (r == 0 ? "unexpected end of file" : std::strerror(errno)));
    p += r;
    n -= static_cast<size_t>(r);
    offset += static_cast<uint64_t>(r);
  }
}

void write_all(int fd, const void* buf, size_t n, const std::string& path) {
  auto* p = static_cast<const char*>(buf);
  while (n > 0) {
    ssize_t w = ::write(fd, p, n);
    if (w < 0 && errno == EINTR) continue;
    if (w < 0) throw SafetensorsError(path + ": write failed: " + std::strerror(errno));
    p += w;
    n -= static_cast<size_t>(w);
  }
}

struct Entry {
  std::string name;
  at::ScalarType dtype;
  std::vector<int64_t> shape;
  uint64_t begin, end;
};

Entry parse_entry(const std::string& name, const json::Value& v, uint64_t data_size,
                  const std::string& path) {
  std::string where = path + ": tensor '" + name + "'";
  if (!v.is_object()) throw SafetensorsError(where + ": header entry is not an object");
  const auto dtype = v.find("dtype"), shape = v.find("shape"), offsets = v.find("data_offsets");
  if (dtype == v.end() || !dtype->is_string() || shape == v.end() || !shape->is_array() ||
      offsets == v.end() || !offsets->is_array() || offsets->size() != 2)
    throw SafetensorsError(where + ": needs dtype (string), shape (list), data_offsets ([b, e])");
  Entry e{name, dtype_from_name(dtype->get<std::string>(), where), {}, 0, 0};
  // Non-negative integers parse as unsigned; a negative or fractional one is refused.
  uint64_t numel = 1;
  for (const auto& d : *shape) {
    if (!d.is_number_unsigned()) throw SafetensorsError(where + ": bad shape dimension");
    const auto n = d.get<uint64_t>();
    if (n != 0 && numel > (1ull << 50) / n) throw SafetensorsError(where + ": shape too large");
    e.shape.push_back(static_cast<int64_t>(n));
    numel *= n;
  }
  for (const auto& o : *offsets)
    if (!o.is_number_unsigned()) throw SafetensorsError(where + ": bad data_offsets");
  e.begin = (*offsets)[0].get<uint64_t>();
  e.end = (*offsets)[1].get<uint64_t>();
  uint64_t nbytes = numel * c10::elementSize(e.dtype);
  if (e.end < e.begin || e.end - e.begin != nbytes)
    throw SafetensorsError(where + ": data_offsets [" + std::to_string(e.begin) + ", " +
                           std::to_string(e.end) + "] do not hold " + std::to_string(nbytes) +
                           " bytes of its dtype and shape");
  if (e.end > data_size)
    throw SafetensorsError(where + ": data ends at byte " + std::to_string(e.end) +
                           " but the file has only " + std::to_string(data_size) +
                           " data bytes (truncated file?)");
  return e;
}

}  // namespace

SafetensorsFile read_safetensors(const std::string& path) {
  Fd fd(path, O_RDONLY | O_CLOEXEC);
  if (fd.get() < 0) throw SafetensorsError(path + ": cannot open: " + std::strerror(errno));
  struct stat st {};
  if (::fstat(fd.get(), &st) != 0 || !S_ISREG(st.st_mode))
    throw SafetensorsError(path + ": not a regular file");
  auto file_size = static_cast<uint64_t>(st.st_size);
  if (file_size < 8)
    throw SafetensorsError(path + ": " + std::to_string(file_size) +
                           " bytes is too short for a safetensors file (truncated?)");
  unsigned char len_bytes[8];
  pread_all(fd.get(), len_bytes, 8, 0, path);
  uint64_t header_len = 0;
  for (int i = 7; i >= 0; --i) header_len = (header_len << 8) | len_bytes[i];
  if (header_len > kMaxHeader || header_len > file_size - 8)
    throw SafetensorsError(path + ": header length " + std::to_string(header_len) +
                           " exceeds the file (" + std::to_string(file_size) +
                           " bytes): truncated or not a safetensors file");
  std::string header(header_len, '\0');
  pread_all(fd.get(), header.data(), header_len, 8, path);
  json::Value root;
  std::set<std::string> names;  // a name twice would silently keep only the last entry
  auto no_duplicates = [&](int depth, json::Value::parse_event_t event, json::Value& parsed) {
    if (event == json::Value::parse_event_t::key && depth == 1 &&
        !names.insert(parsed.get<std::string>()).second)
      throw SafetensorsError(path + ": tensor '" + parsed.get<std::string>() +
                             "' appears twice in the header");
    return true;
  };
  try {
    root = json::Value::parse(header, no_duplicates);
  } catch (const json::Value::parse_error& e) {
    throw SafetensorsError(path + ": malformed header: " + e.what());
  }
  if (!root.is_object()) throw SafetensorsError(path + ": header is not a JSON object");

  uint64_t data_start = 8 + header_len, data_size = file_size - data_start;
  SafetensorsFile out;
  std::vector<Entry> entries;
  for (const auto& [name, value] : root.items()) {
    if (name == "__metadata__") {
      if (!value.is_object()) throw SafetensorsError(path + ": __metadata__ is not an object");
      for (const auto& [k, v] : value.items()) {
        if (!v.is_string())
          throw SafetensorsError(path + ": __metadata__." + k + " is not a string");
        out.metadata[k] = v.get<std::string>();
      }
      continue;
    }
    entries.push_back(parse_entry(name, value, data_size, path));
  }
  // Overlapping ranges would alias two tensors onto the same bytes: reject them.
  std::vector<const Entry*> by_offset;
  for (const auto& e : entries) by_offset.push_back(&e);
  std::sort(by_offset.begin(), by_offset.end(),
            [](const Entry* a, const Entry* b) { return a->begin < b->begin; });
  for (size_t i = 1; i < by_offset.size(); ++i)
    if (by_offset[i]->begin < by_offset[i - 1]->end)
      throw SafetensorsError(path + ": tensors '" + by_offset[i - 1]->name + "' and '" +
                             by_offset[i]->name + "' overlap");

  for (const auto& e : entries) {
    at::Tensor t = at::empty(e.shape, at::TensorOptions().dtype(e.dtype));
    if (e.end > e.begin)
      pread_all(fd.get(), t.data_ptr(), e.end - e.begin, data_start + e.begin, path);
    out.tensors.emplace_back(e.name, std::move(t));
  }
  return out;
}

void write_safetensors(const std::string& path, const NamedTensors& tensors,
                       const std::map<std::string, std::string>& metadata) {
  json::Value header = json::Value::object();
  if (!metadata.empty()) {
    json::Value& m = header["__metadata__"];
    for (const auto& [k, v] : metadata) m[k] = v;
  }
  uint64_t offset = 0;
  std::vector<at::Tensor> data;
  for (const auto& [name, t] : tensors) {
    if (header.contains(name))
      throw SafetensorsError(path + ": duplicate tensor name '" + name + "'");
    at::Tensor c = t.detach().to(at::kCPU).contiguous();
    json::Value entry = json::Value::object();
    entry["dtype"] = dtype_name(c.scalar_type());
    json::Value shape = json::Value::array();
    for (int64_t d : c.sizes()) shape.push_back(d);
    entry["shape"] = shape;
    uint64_t nbytes = c.nbytes();
    json::Value offs = json::Value::array();
    offs.push_back(offset);
    offs.push_back(offset + nbytes);
    entry["data_offsets"] = offs;
    header[name] = entry;
    offset += nbytes;
    data.push_back(c);
  }
  std::string text = header.dump();
  text.append((8 - text.size() % 8) % 8, ' ');  // keep tensor data 8-byte aligned
  util::write_atomically(path, [&](const std::string& tmp) {
    Fd fd(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC);
    if (fd.get() < 0) throw SafetensorsError(tmp + ": cannot create: " + std::strerror(errno));
    unsigned char len_bytes[8];
    uint64_t len = text.size();
    for (int i = 0; i < 8; ++i) len_bytes[i] = static_cast<unsigned char>(len >> (8 * i));
    write_all(fd.get(), len_bytes, 8, tmp);
    write_all(fd.get(), text.data(), text.size(), tmp);
    for (const auto& c : data) write_all(fd.get(), c.data_ptr(), c.nbytes(), tmp);
  });
}

}  // namespace coatnet::model
