#include "pipeline/video_frames.h"

#include <ATen/Parallel.h>

#include <algorithm>

#include "core/errors.h"
#include "core/tensor_io.h"

namespace wan {

at::Tensor videoToFrames(const at::Tensor& video) {
  if (!video.defined() || video.dim() != 5 || video.size(1) != 3 || !at::isFloatingType(video.scalar_type()))
    throwBadArgument("video must be a floating tensor [B, 3, F, H, W]; got " +
                     (video.defined() ? c10::toString(video.scalar_type()) + std::string(" ") + shapeString(video.sizes()) : std::string("none")));
  const int64_t b = video.size(0), f = video.size(2), h = video.size(3), w = video.size(4);
  at::Tensor frames = at::empty({b, f, h, w, 3}, at::TensorOptions().dtype(at::kByte));
  if (frames.numel() == 0) return frames;
  // Chunks of whole frames: on the CPU small enough to stay in cache across the passes below, on a
  // GPU large enough that the per-chunk copies to the host do not dominate.
  const int64_t perFrame = b * 3 * h * w;
  const int64_t budget = video.is_cpu() ? (int64_t{1} << 20) : (int64_t{1} << 26);
  const int64_t chunk = std::max<int64_t>(1, budget / perFrame);
  for (int64_t f0 = 0; f0 < f; f0 += chunk) {
    const int64_t n = std::min(chunk, f - f0);
    // Each step is its own float32 op (no fused multiply-add), as in the JS formula. div() makes a
    // new tensor, so the caller's video is never written.
    at::Tensor x = video.narrow(2, f0, n).to(at::kFloat).div(2);
    x.add_(0.5).nan_to_num_(0.0).clamp_(0.0, 1.0).mul_(255.0).round_();  // round: half to even
    // Whole numbers in [0, 255]: the cast to uint8 is exact.
    const at::Tensor planes = x.to(at::kByte).contiguous();  // [B, 3, n, H, W]
    if (!planes.is_cpu()) {
      // On a GPU only the bytes cross, already in frame order.
      frames.narrow(1, f0, n).copy_(planes.permute({0, 2, 3, 4, 1}).contiguous());
      continue;
    }
    // Planes -> interleaved RGB by hand: libtorch's strided copy into a last dim of 3 is ~10x slower.
    const int64_t pixels = n * h * w;
    const uint8_t* src = planes.data_ptr<uint8_t>();
    uint8_t* dst = frames.data_ptr<uint8_t>();
    for (int64_t bi = 0; bi < b; ++bi) {
      const uint8_t* r = src + bi * 3 * pixels;
      const uint8_t* g = r + pixels;
      const uint8_t* bl = g + pixels;
      uint8_t* out = dst + ((bi * f + f0) * h * w) * 3;
      at::parallel_for(0, pixels, 16384, [&](int64_t begin, int64_t end) {
        for (int64_t i = begin; i < end; ++i) {
          out[3 * i] = r[i];
          out[3 * i + 1] = g[i];
          out[3 * i + 2] = bl[i];
        }
      });
    }
  }
  return frames;
}

}  // namespace wan
