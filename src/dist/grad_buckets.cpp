#include "dist/grad_buckets.h"

#include <torch/csrc/autograd/function.h>
#include <torch/csrc/autograd/variable.h>

#include <stdexcept>
#include <string>

namespace coatnet::dist {

namespace {

// Runs after AccumulateGrad has added this step's gradient into the parameter's .grad view.
class ReadyHook : public torch::autograd::FunctionPostHook {
 public:
  ReadyHook(GradBuckets* owner, size_t index) : owner_(owner), index_(index) {}
  torch::autograd::variable_list operator()(const torch::autograd::variable_list& outputs,
                                            const torch::autograd::variable_list&) override {
    owner_->mark_ready(index_);
    return outputs;
  }

 private:
  GradBuckets* owner_;
  size_t index_;
};

}  // namespace

GradBuckets::GradBuckets(std::vector<at::Tensor> params, at::Tensor flat_grads,
                         std::vector<int64_t> offsets, Comm& comm, int64_t first_bucket_bytes,
                         int64_t bucket_bytes)
    : params_(std::move(params)), flat_(std::move(flat_grads)), comm_(comm) {
  if (offsets.size() != params_.size())
    throw std::invalid_argument("GradBuckets: " + std::to_string(params_.size()) +
                                " parameters but " + std::to_string(offsets.size()) + " offsets");
  const int64_t elem = static_cast<int64_t>(flat_.element_size());
  bucket_of_.resize(params_.size());
  for (size_t i = 0; i < params_.size(); ++i) {
    at::Tensor& p = params_[i];
    const int64_t n = p.numel();
    if (offsets[i] < 0 || offsets[i] + n > flat_.numel())
      throw std::invalid_argument("GradBuckets: parameter " + std::to_string(i) +
                                  " does not fit in the flat gradient buffer");
    p.mutable_grad() = flat_.narrow(0, offsets[i], n).view(p.sizes());
    const int64_t limit = buckets_.size() <= 1 ? first_bucket_bytes : bucket_bytes;
    // A bucket is a range of the flat buffer: parameters in order, with the padding that aligns
    // them (zeros) inside it.
    if (buckets_.empty() || (buckets_.back().end - buckets_.back().begin) * elem >= limit ||
        offsets[i] < buckets_.back().end) {
      Bucket b;
      b.begin = b.end = offsets[i];
      buckets_.push_back(std::move(b));
    }
    Bucket& b = buckets_.back();
    b.end = offsets[i] + n;
    b.params.push_back(i);
    bucket_of_[i] = buckets_.size() - 1;
    accumulators_.push_back(hooked_accumulator(i));
  }
}

std::shared_ptr<torch::autograd::Node> GradBuckets::hooked_accumulator(size_t i) {
  // The accumulator must be held: the parameter keeps only a weak reference to it, and a new
  // one (without our hook) would be made after each backward frees the graph.
  auto acc = torch::autograd::impl::grad_accumulator(params_[i]);
  if (!acc)
    throw std::invalid_argument("GradBuckets: parameter " + std::to_string(i) +
                                " does not require grad");
  acc->add_post_hook(std::make_unique<ReadyHook>(this, i));
  return acc;
}

void GradBuckets::remake_accumulators() {
  // Only ours may hold them: one held elsewhere would come back (with our hook, which would then
  // count the gradient twice) instead of a new one.
  for (size_t i = 0; i < accumulators_.size(); ++i)
    if (accumulators_[i].use_count() != 1)
      throw std::logic_error(
          "GradBuckets::remake_accumulators: parameter " + std::to_string(i) +
          "'s gradient accumulator is still held elsewhere (" +
          std::to_string(accumulators_[i].use_count() - 1) +
          " reference(s): a step's loss or autograd graph); remake them before the first step");
  accumulators_.clear();  // each is destroyed here: the parameters hold weak references only
  for (size_t i = 0; i < params_.size(); ++i) accumulators_.push_back(hooked_accumulator(i));
}

GradBuckets::~GradBuckets() {
  for (Bucket& b : buckets_)
    if (b.work) b.work->wait();
}

double GradBuckets::since_begin() const {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0_).count();
}

void GradBuckets::scatter_into(at::Tensor owned, Partition partition) {
  if (partition.world != comm_.size() || partition.rank != comm_.rank() ||
      partition.shard * partition.world != flat_.numel() || owned.numel() != partition.shard)
    throw std::invalid_argument("GradBuckets::scatter_into: " + std::to_string(flat_.numel()) +
                                " gradient elements are not " + std::to_string(comm_.size()) +
                                " shards of " + std::to_string(partition.shard) +
                                " (owned: " + std::to_string(owned.numel()) +
                                "; partition of rank " + std::to_string(partition.rank) + " of " +
                                std::to_string(partition.world) + ")");
  owned_ = std::move(owned);
  part_ = partition;
}

void GradBuckets::zero() {
  flat_.zero_();
  // The reduce-scatter writes the buckets' ranges only: the padding between them must not keep
  // what clipping made of it (a NaN norm's coefficient would stay there for good).
  if (owned_.defined()) owned_.zero_();
}

void GradBuckets::begin_backward(bool sync) {
  sync_ = sync;
  next_launch_ = 0;
  t0_ = std::chrono::steady_clock::now();
  first_in_flight_ = 0;
  for (Bucket& b : buckets_) {
    b.pending = b.params.size();
    b.ready_s = b.launched_s = b.done_s = -1;
    b.work.reset();
  }
}

void GradBuckets::mark_ready(size_t param_index) {
  if (!sync_) return;
  Bucket& b = buckets_[bucket_of_[param_index]];
  if (b.pending == 0) return;  // a parameter used twice in the graph is counted once
  if (--b.pending == 0) {
    b.ready_s = since_begin();
    launch_ready();
  }
  poll_in_flight();
}

void GradBuckets::poll_in_flight() {
  // Testing the launched all-reduces is what lets them advance while backward computes (MPI
  // progresses only inside MPI calls), and it dates their completion for the overlap figures.
  for (size_t i = first_in_flight_; i < next_launch_; ++i) {
    Bucket& b = buckets_[i];
    if (b.done_s >= 0) continue;
    if (b.work && !b.work->done()) return;  // later ones were launched later: test them later
    b.done_s = since_begin();
    first_in_flight_ = i + 1;
  }
}

void GradBuckets::launch_ready() {
  // In bucket order only: collectives must be issued in the same order on every rank.
  while (next_launch_ < buckets_.size() && buckets_[next_launch_].pending == 0) {
    Bucket& b = buckets_[next_launch_];
    b.launched_s = since_begin();
    ++next_launch_;
    if (comm_.size() == 1) continue;  // nothing to exchange
    const std::string index = std::to_string(next_launch_ - 1);
    at::Tensor range = flat_.narrow(0, b.begin, b.end - b.begin);
    if (!owned_.defined()) {
      b.work = comm_.allreduce_async(range, "gradient all-reduce, bucket " + index);
      continue;
    }
    std::vector<int64_t> counts = part_.counts(b.begin, b.end);
    const int64_t mine = counts[static_cast<size_t>(comm_.rank())];
    b.work =
        comm_.reduce_scatter_async(range, owned_.narrow(0, part_.owned_offset(b.begin), mine),
                                   std::move(counts), "gradient reduce-scatter, bucket " + index);
  }
}

void GradBuckets::finish() {
  backward_end_s_ = since_begin();
  last_wait_s_ = 0;
  if (!sync_) return;
  // Parameters that took no part in this graph leave their bucket pending: start it anyway.
  for (Bucket& b : buckets_) b.pending = 0;
  launch_ready();
  const auto w0 = std::chrono::steady_clock::now();
  for (Bucket& b : buckets_) {
    if (b.work) b.work->wait();
    if (b.done_s < 0) b.done_s = since_begin();  // else it completed during backward
  }
  last_wait_s_ = std::chrono::duration<double>(std::chrono::steady_clock::now() - w0).count();
  if (comm_.size() > 1) (owned_.defined() ? owned_ : flat_).div_(static_cast<double>(comm_.size()));
}

}  // namespace coatnet::dist
