// The prefetching loader: the sampler's batches decoded and augmented on a thread pool (one
// TurboJPEG handle per thread), `prefetch` batches ahead, so the trainer only waits when the
// pipeline cannot keep up — and the loader reports how long it waited.
//
//   Loader loader(options);
//   Batch b = loader.next();   // b.images: (B, C, S, S) float, normalized
//   SamplerState s = loader.state();  // after the batches handed out: resume from here
#pragma once

#include <ATen/core/Tensor.h>

#include <atomic>
#include <deque>
#include <functional>
#include <memory>

#include "data/dataset.h"
#include "data/sampler.h"
#include "data/transform.h"
#include "util/thread_pool.h"

namespace coatnet::data {

struct LoaderOptions {
  std::vector<std::string> files;  // shard files (globs already expanded)
  SamplerOptions sampler;          // num_samples is filled in from the dataset
  TransformOptions transform;
  int threads = 2;
  int prefetch = 4;
  bool normalize = true;       // float, (x/255 - mean)/std; else uint8 0..255
  bool channels_last = false;  // NHWC memory (logical shape stays NCHW)
  bool pin_memory = false;     // page-locked batch memory (needs CUDA), for async copies
  std::vector<double> mean{0.485, 0.456, 0.406}, std{0.229, 0.224, 0.225};
  bool skip_corrupt = true;  // a record that fails to decode: count it and mask it out, or throw
};

struct Batch {
  at::Tensor images;   // (B, C, S, S)
  at::Tensor targets;  // int64 (B) class, -1 where invalid; multi-label: float (B, classes)
  at::Tensor valid;    // bool (B): false for padding and skipped corrupt records
  std::vector<int64_t> indices;  // dataset index of each row, -1 for padding
  int64_t epoch = 0;
  double wait_seconds = 0;  // how long next() blocked for this batch
  int64_t corrupt = 0;      // records of this batch that failed to decode (masked out)
};

class Loader {
 public:
  explicit Loader(LoaderOptions options);
  ~Loader();
  // `meanwhile`, if given, is called about every 0.5 ms while the batch is not ready yet, until
  // it returns true: it drives work that progresses only when polled (an MPI collective in
  // flight, such as ZeRO-1's parameter all-gather), so that it overlaps the wait.
  Batch next(const std::function<bool()>& meanwhile = {});
  // The batch's images on `device` as normalised float. A uint8 batch (normalize = false) is
  // normalised there, with the same float arithmetic as the loader's (bit-identical on CPU).
  at::Tensor images_on(const Batch& batch, const at::Device& device);
  // Whether batches are uint8 (normalised later, by images_on or a fused kernel), and the
  // per-channel normalisation v·scale + bias as (C) float32 tensors on `device` (made there
  // once; images_on uses the same).
  bool uint8_batches() const { return !opt_.normalize; }
  struct Normalisation {
    at::Tensor scale, bias;
  };
  Normalisation normalisation_on(const at::Device& device);
  SamplerState state() const { return delivered_; }
  void restore(SamplerState s);  // drops prefetched batches and continues from s
  const Dataset& dataset() const { return *dataset_; }
  int64_t batches_per_epoch() const { return sampler_->batches_per_epoch(); }
  double total_wait_seconds() const { return total_wait_; }
  // Corrupt records in the batches handed out so far (not counting prefetched ones).
  int64_t corrupt_records() const { return corrupt_; }

 private:
  struct Pending;
  void submit_one();
  void drain();
  // Row k of the batch as the transform's destination (dtype, layout, normalisation).
  ImageOut slot(at::Tensor& images, int64_t k) const;
  std::vector<float> scale_, bias_;  // per channel: normalized = v·scale + bias
  Normalisation device_norm_;        // scale_ and bias_ on the last device asked for

  LoaderOptions opt_;
  std::unique_ptr<Dataset> dataset_;
  std::unique_ptr<DistributedSampler> sampler_;
  std::unique_ptr<ThreadPool<Decoder>> pool_;
  std::deque<std::shared_ptr<Pending>> pending_;
  SamplerState delivered_;
  double total_wait_ = 0;
  int64_t corrupt_ = 0;
};

}  // namespace coatnet::data
