#include "data/loader.h"

#include <ATen/ATen.h>

#include <malloc.h>

#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <mutex>

namespace coatnet::data {

struct Loader::Pending {
  Batch batch;
  SamplerState after;  // sampler state once this batch is consumed
  std::atomic<int> remaining{0};
  std::atomic<int> corrupt{0};
  std::mutex mu;
  std::condition_variable cv;
  bool ready = false;
  std::string error;
};

Loader::Loader(LoaderOptions o) : opt_(std::move(o)) {
  // Batches are tens of MB; glibc would mmap and unmap each one, and the kernel would zero
  // every page again (a fifth of the loader's time, measured). Keep freed batches in the heap.
  mallopt(M_MMAP_THRESHOLD, 512 << 20);
  mallopt(M_TRIM_THRESHOLD, 1 << 30);
  dataset_ = std::make_unique<Dataset>(opt_.files);
  opt_.sampler.num_samples = dataset_->size();
  sampler_ = std::make_unique<DistributedSampler>(opt_.sampler);
  if (static_cast<int>(opt_.mean.size()) != opt_.transform.channels ||
      static_cast<int>(opt_.std.size()) != opt_.transform.channels)
    throw std::invalid_argument(
        "data.mean and data.std need " + std::to_string(opt_.transform.channels) +
        " values (one per channel), got " + std::to_string(opt_.mean.size()) + " and " +
        std::to_string(opt_.std.size()));
  for (int c = 0; c < opt_.transform.channels; ++c) {  // (v/255 - mean)/std = v·scale + bias
    scale_.push_back(static_cast<float>(1.0 / (255.0 * opt_.std[c])));
    bias_.push_back(static_cast<float>(-opt_.mean[c] / opt_.std[c]));
  }
  pool_ = std::make_unique<ThreadPool<Decoder>>(opt_.threads);
  for (int i = 0; i < std::max(1, opt_.prefetch); ++i) submit_one();
}

Loader::~Loader() {
  drain();
}

void Loader::drain() {
  for (auto& p : pending_) {
    std::unique_lock<std::mutex> lock(p->mu);
    p->cv.wait(lock, [&] { return p->ready; });
  }
  pending_.clear();
}

void Loader::restore(SamplerState s) {
  drain();
  sampler_->restore(s);
  delivered_ = s;
  for (int i = 0; i < std::max(1, opt_.prefetch); ++i) submit_one();
}

void Loader::submit_one() {
  auto p = std::make_shared<Pending>();
  p->batch.indices = sampler_->next();
  p->after = sampler_->state();
  p->batch.epoch = p->after.epoch;
  const int64_t b = static_cast<int64_t>(p->batch.indices.size());
  const TransformOptions& t = opt_.transform;
  // Workers write each row in its final layout, so finishing a batch costs nothing. The
  // layout is the allocation's own: re-laying out afterwards would copy into ordinary memory
  // and lose the pinning. Pinned blocks come from CUDA's caching host allocator: after the
  // first batches no cudaHostAlloc happens on this path.
  // The labels and the valid rows are pinned too: a copy to the GPU from pageable memory waits
  // for all the work queued on the stream, which would stall every step on the last one.
  const auto host = at::TensorOptions().pinned_memory(opt_.pin_memory);
  const auto layout =
      opt_.channels_last ? at::MemoryFormat::ChannelsLast : at::MemoryFormat::Contiguous;
  p->batch.images =
      at::empty({b, t.channels, t.size, t.size},
                host.dtype(opt_.normalize ? at::kFloat : at::kByte).memory_format(layout));
  const ShardMeta& meta = dataset_->meta();
  p->batch.valid = at::zeros({b}, host.dtype(at::kBool));
  p->batch.targets = meta.multi_label ? at::zeros({b, meta.num_classes}, host.dtype(at::kFloat))
                                      : at::full({b}, -1, host.dtype(at::kLong));
  p->remaining = static_cast<int>(b);

  auto finish = [p] {
    std::lock_guard<std::mutex> lock(p->mu);
    p->ready = true;
    p->cv.notify_all();
  };

  for (int64_t k = 0; k < b; ++k) {
    pool_->submit([this, p, k, finish](Decoder& dec) {
      const int64_t index = p->batch.indices[k];
      const ImageOut out = slot(p->batch.images, k);
      bool written = false;
      if (index >= 0) {
        try {
          auto [shard, j] = dataset_->locate(index);
          thread_local std::vector<uint8_t> buf;
          shard->read_bytes(j, &buf);
          dec.transform(buf, shard->meta().encoding, shard->height(j), shard->width(j),
                        shard->channels(j), opt_.transform, p->batch.epoch, index, out);
          written = true;
          if (shard->meta().multi_label) {
            Record r = shard->read(j);  // labels only; the bytes were read above
            float* row = p->batch.targets.data_ptr<float>() + k * shard->meta().num_classes;
            for (size_t l = 0; l < r.labels.size(); ++l)
              row[r.labels[l]] = r.label_weights.empty() ? 1.0f : r.label_weights[l];
          } else {
            p->batch.targets.data_ptr<int64_t>()[k] = shard->label(j);
          }
          p->batch.valid.data_ptr<bool>()[k] = true;
        } catch (const std::exception& e) {
          p->corrupt.fetch_add(1);
          written = false;
          if (!opt_.skip_corrupt) {
            std::lock_guard<std::mutex> lock(p->mu);
            p->error = "record " + std::to_string(index) + ": " + e.what();
          } else {
            std::fprintf(stderr, "[data] skipped record %lld: %s\n", static_cast<long long>(index),
                         e.what());
          }
        }
      }
      if (!written) write_black(out);  // padding, or a record that failed part-way
      if (p->remaining.fetch_sub(1) == 1) finish();
    });
  }
  pending_.push_back(std::move(p));
}

ImageOut Loader::slot(at::Tensor& images, int64_t k) const {
  const TransformOptions& t = opt_.transform;
  const int64_t elems = static_cast<int64_t>(t.size) * t.size * t.channels;
  ImageOut out;
  out.data = opt_.normalize ? static_cast<void*>(images.data_ptr<float>() + k * elems)
                            : static_cast<void*>(images.data_ptr<uint8_t>() + k * elems);
  out.size = t.size;
  out.channels = t.channels;
  out.channels_last = opt_.channels_last;
  if (opt_.normalize) {
    out.scale = scale_.data();
    out.bias = bias_.data();
  }
  return out;
}

at::Tensor Loader::images_on(const Batch& batch, const at::Device& device) {
  // Asynchronous from pinned memory; a synchronous copy otherwise.
  at::Tensor x = batch.images.to(device, /*non_blocking=*/true);
  if (opt_.normalize) return x;
  const int64_t c = opt_.transform.channels;
  const Normalisation n = normalisation_on(device);
  // Two rounded steps, as the loader's own v·scale + bias: the same floats on CPU.
  return x.to(at::kFloat).mul_(n.scale.view({1, c, 1, 1})).add_(n.bias.view({1, c, 1, 1}));
}

Loader::Normalisation Loader::normalisation_on(const at::Device& device) {
  if (!device_norm_.scale.defined() || device_norm_.scale.device() != device)
    device_norm_ = {at::tensor(scale_, at::kFloat).to(device),
                    at::tensor(bias_, at::kFloat).to(device)};
  return device_norm_;
}

Batch Loader::next(const std::function<bool()>& meanwhile) {
  auto p = pending_.front();
  auto t0 = std::chrono::steady_clock::now();
  {
    std::unique_lock<std::mutex> lock(p->mu);
    bool polling = static_cast<bool>(meanwhile);
    while (polling && !p->ready) {
      lock.unlock();
      polling = !meanwhile();
      lock.lock();
      if (polling) p->cv.wait_for(lock, std::chrono::microseconds(500), [&] { return p->ready; });
    }
    p->cv.wait(lock, [&] { return p->ready; });
  }
  double waited = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  pending_.pop_front();
  if (!p->error.empty())
    throw DecodeError(p->error + " (data.on_corrupt: error; set it to skip to count and skip)");
  delivered_ = p->after;
  submit_one();
  p->batch.wait_seconds = waited;
  p->batch.corrupt = p->corrupt.load();
  corrupt_ += p->batch.corrupt;
  total_wait_ += waited;
  return std::move(p->batch);
}

}  // namespace coatnet::data
