// Moving read-only weights between host memory and a compute device, for the offload modes.
//
// HostArena keeps host copies of weights packed into a few large chunks (pinned for a GPU, so that
// uploads are asynchronous DMA). UploadStream copies weights to the device on a side stream, so an
// upload overlaps the compute that runs meanwhile; the compute stream waits on an event per upload
// before it reads the copies. Device copies are never copied back: weights do not change, so
// "offloading" is dropping the device copy and keeping the host one.
//
// Device-generic (c10 streams and events, no CUDA headers): on the CPU an upload is `to(kCPU)`,
// which returns the very tensor (no copy, no memory), so the CPU runs the same code path as a GPU
// and the tests exercise its order at no cost.
#pragma once
#include <ATen/ATen.h>
#include <c10/core/Event.h>
#include <c10/core/Stream.h>

#include <atomic>
#include <functional>
#include <memory>
#include <vector>

namespace wan {

class HostArena {
 public:
  // `pin`: page-locked chunks (needs a CUDA libtorch). A chunk holds `chunkBytes` or one larger
  // tensor. One allocation per chunk, not per tensor: the CUDA host allocator rounds every
  // allocation up to a power of two (a 141 MB FFN weight would take 256 MB). When the system
  // refuses page-locked memory (a limit, or no CUDA), the arena goes on in ordinary memory:
  // uploads from it are synchronous, but they work.
  explicit HostArena(bool pin, int64_t chunkBytes = kDefaultChunkBytes);

  // An arena for weights of `totalBytes` in all (alignedBytes summed): chunks no larger than that,
  // so that a small model does not pin a whole default chunk.
  static HostArena forTotal(bool pin, int64_t totalBytes);

  // What copy(t) takes of a chunk.
  static int64_t alignedBytes(const at::Tensor& t);

  // A copy of `t` (same dtype and shape, contiguous) in the arena's memory.
  at::Tensor copy(const at::Tensor& t);

  int64_t chunkCount() const { return static_cast<int64_t>(chunks_.size()); }
  int64_t reservedBytes() const;  // the chunks' sizes
  int64_t usedBytes() const { return usedBytes_; }
  int64_t unpinnedBytes() const { return unpinnedBytes_; }  // chunks that were to be pinned but are not

  // Every copy starts at a multiple of this (a cache line; vector loads).
  static constexpr int64_t kAlignment = 64;
  static constexpr int64_t kDefaultChunkBytes = int64_t{1} << 30;

 private:
  bool pin_;           // still asking for page-locked chunks
  bool wantedPinned_;  // asked for them at all
  int64_t chunkBytes_;
  std::vector<at::Tensor> chunks_;  // uint8 [bytes]
  int64_t offset_ = 0;              // next free byte in chunks_.back()
  int64_t usedBytes_ = 0;
  int64_t unpinnedBytes_ = 0;
};

// Device copies queued on the side stream, and the event that says they have landed (null where
// copies are synchronous: the CPU).
struct Upload {
  std::shared_ptr<c10::Event> ready;
  std::vector<at::Tensor> tensors;
};

class UploadStream {
 public:
  // `device`: where uploads go. For CUDA without an index, the current device.
  explicit UploadStream(at::Device device);

  at::Device device() const { return device_; }

  // Replaces every tensor in `weights` by a copy on the device, queued on the side stream. The
  // copies must not be read before await().
  Upload start(const std::vector<at::Tensor*>& weights) const;

  // Makes the calling thread's current stream wait for `upload`, and marks its tensors as used by
  // that stream, so that dropping them early (a streamed block) cannot hand their memory to a later
  // upload before the compute that reads them has run.
  void await(const Upload& upload) const;

  // Blocks until the current stream's queued work is done: before dropping device weights to make
  // room for others, so the freed memory is really free (the peak stays one component).
  void synchronize() const;

  // A mark at this point of the current stream's queued work (null where copies are synchronous),
  // and a host wait until the device has passed it. Streaming uses them to keep the host at most a
  // few blocks ahead of the device: the caching allocator hands a dropped block's memory to the next
  // upload only once the compute that read it has run, so a host queueing far ahead would make
  // every upload allocate anew (reserved memory growing towards the whole model).
  std::shared_ptr<c10::Event> mark() const;
  static void waitFor(const std::shared_ptr<c10::Event>& mark);

  // Bytes start() has copied (or queued) to the device so far: what the offload modes cost in
  // transfers, for the benchmark and the tests.
  int64_t uploadedBytes() const { return uploadedBytes_.load(); }

 private:
  at::Device device_;
  bool async_;          // CUDA: a side stream and events
  c10::Stream stream_;  // the side stream (the default stream when not async)
  mutable std::atomic<int64_t> uploadedBytes_{0};
};

// A component's weights visiting another device for a while (the text encoder while it encodes,
// the VAE while it encodes or decodes): enter() replaces each weight by a copy on the device and
// keeps the originals, leave() puts them back. Synchronous: these visits are short and rare.
class DeviceVisit {
 public:
  using WeightFn = std::function<void(at::Tensor&)>;
  using ForEachWeight = std::function<void(const WeightFn&)>;

  // Moves the weights of a component computing on `from` to `to` and returns where it computes now
  // (`to`; `from` when it is already there or visiting). Out of memory part way: the weights
  // already moved are put back, then the error is rethrown.
  at::Device enter(const ForEachWeight& forEach, at::Device from, at::Device to);
  // Puts the weights back and returns where the component computes again (`current` when not visiting).
  at::Device leave(const ForEachWeight& forEach, at::Device current);
  bool active() const { return active_; }

 private:
  std::vector<at::Tensor> home_;  // in forEach order
  at::Device homeDevice_ = at::kCPU;
  bool active_ = false;
};

}  // namespace wan
