#include "core/weight_transfer.h"

#include <c10/core/StreamGuard.h>
#include <c10/core/impl/VirtualGuardImpl.h>

#include <algorithm>
#include <thread>

namespace wan {

HostArena::HostArena(bool pin, int64_t chunkBytes) : pin_(pin), wantedPinned_(pin), chunkBytes_(chunkBytes) {}

HostArena HostArena::forTotal(bool pin, int64_t totalBytes) {
  return HostArena(pin, std::clamp(totalBytes, kAlignment, kDefaultChunkBytes));
}

int64_t HostArena::alignedBytes(const at::Tensor& t) {
  const int64_t bytes = t.numel() * static_cast<int64_t>(t.element_size());
  return (bytes + kAlignment - 1) / kAlignment * kAlignment;
}

at::Tensor HostArena::copy(const at::Tensor& t) {
  const at::Tensor src = t.contiguous();
  const int64_t bytes = src.numel() * static_cast<int64_t>(src.element_size());
  const int64_t aligned = alignedBytes(src);
  if (chunks_.empty() || offset_ + aligned > chunks_.back().numel()) {
    // Chunks start aligned: c10's CPU allocator aligns to 64 bytes, pinned memory to pages.
    const int64_t size = std::max(chunkBytes_, aligned);
    at::Tensor chunk;
    if (pin_) {
      try {
        chunk = at::empty({size}, at::TensorOptions().dtype(at::kByte).pinned_memory(true));
      } catch (const c10::Error&) {
        pin_ = false;  // refused once: do not ask again for every chunk
      }
    }
    if (!chunk.defined()) {
      chunk = at::empty({size}, at::TensorOptions().dtype(at::kByte));
      if (wantedPinned_) unpinnedBytes_ += size;
    }
    chunks_.push_back(chunk);
    offset_ = 0;
  }
  at::Tensor dst = chunks_.back().narrow(0, offset_, bytes).view(src.scalar_type()).view(src.sizes());
  dst.copy_(src);
  offset_ += aligned;
  usedBytes_ += bytes;
  return dst;
}

int64_t HostArena::reservedBytes() const {
  int64_t n = 0;
  for (const auto& c : chunks_) n += c.numel();
  return n;
}

namespace {

at::Device withIndex(at::Device device) {
  if (!device.is_cuda() || device.has_index()) return device;
  return c10::impl::VirtualGuardImpl(device.type()).getDevice();
}

}  // namespace

UploadStream::UploadStream(at::Device device)
    : device_(withIndex(device)),
      async_(device_.is_cuda()),
      stream_(async_ ? c10::impl::VirtualGuardImpl(device_.type()).getStreamFromGlobalPool(device_)
                     : c10::Stream(c10::Stream::DEFAULT, device_)) {}

Upload UploadStream::start(const std::vector<at::Tensor*>& weights) const {
  Upload upload;
  int64_t bytes = 0;
  for (const at::Tensor* w : weights) bytes += w->defined() ? w->nbytes() : 0;
  uploadedBytes_ += bytes;
  if (!async_) {
    for (at::Tensor* w : weights) *w = w->to(device_);
    return upload;
  }
  // Allocated and copied on the side stream: from pinned memory the copies are asynchronous.
  c10::StreamGuard onSideStream(stream_);
  upload.tensors.reserve(weights.size());
  for (at::Tensor* w : weights) {
    *w = w->to(device_, /*non_blocking=*/true);
    upload.tensors.push_back(*w);
  }
  upload.ready = std::make_shared<c10::Event>(device_.type());
  upload.ready->record(stream_);
  return upload;
}

void UploadStream::await(const Upload& upload) const {
  if (!upload.ready) return;
  const c10::Stream compute = c10::impl::VirtualGuardImpl(device_.type()).getStream(device_);
  upload.ready->block(compute);
  for (const at::Tensor& t : upload.tensors) t.record_stream(compute);
}

void UploadStream::synchronize() const {
  if (!async_) return;
  c10::impl::VirtualGuardImpl impl(device_.type());
  impl.synchronizeStream(impl.getStream(device_));
  impl.synchronizeStream(stream_);
}

std::shared_ptr<c10::Event> UploadStream::mark() const {
  if (!async_) return nullptr;
  auto event = std::make_shared<c10::Event>(device_.type());
  event->record(c10::impl::VirtualGuardImpl(device_.type()).getStream(device_));
  return event;
}

void UploadStream::waitFor(const std::shared_ptr<c10::Event>& mark) {
  // c10::Event has no host wait in every libtorch this builds with (1.13 lacks one); the device is
  // a block or two from the mark, so polling is short.
  if (!mark) return;
  while (!mark->query()) std::this_thread::yield();
}

at::Device DeviceVisit::enter(const ForEachWeight& forEach, at::Device from, at::Device to) {
  if (active_ || from == to) return from;
  home_.clear();
  try {
    forEach([&](at::Tensor& t) {
      home_.push_back(t);
      if (t.defined()) t = t.to(to);
    });
  } catch (...) {
    size_t i = 0;
    forEach([&](at::Tensor& t) {
      if (i < home_.size()) t = home_[i++];
    });
    home_.clear();
    throw;
  }
  homeDevice_ = from;
  active_ = true;
  return to;
}

at::Device DeviceVisit::leave(const ForEachWeight& forEach, at::Device current) {
  if (!active_) return current;
  size_t i = 0;
  forEach([&](at::Tensor& t) { t = home_.at(i++); });
  home_.clear();
  active_ = false;
  return homeDevice_;
}

}  // namespace wan
