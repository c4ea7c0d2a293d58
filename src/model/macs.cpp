#include "model/macs.h"

namespace coatnet::model {

namespace {
thread_local MacCounter* current = nullptr;
}

MacCounter::MacCounter() : previous_(current) {
  current = this;
}
MacCounter::~MacCounter() {
  current = previous_;
}
bool MacCounter::active() {
  return current != nullptr;
}
void MacCounter::add(int64_t macs) {
  if (current) current->total_ += macs;
}

void count_conv(const at::Tensor& w, const at::Tensor& out) {
  if (!current) return;
  // w: (Cout, Cin/groups, kh, kw); every output element is a dot of Cin/groups*kh*kw.
  MacCounter::add(out.numel() * (w.numel() / w.size(0)));
}

void count_dot(int64_t outputs, int64_t k) {
  MacCounter::add(outputs * k);
}

}  // namespace coatnet::model
