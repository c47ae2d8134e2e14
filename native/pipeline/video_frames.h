// Decoded video -> 8-bit RGB frames, the pipeline's last step ("VAE decode -> uint8 frames").
#pragma once
#include <ATen/ATen.h>

namespace wan {

// video [B, 3, F, H, W] in [-1, 1] (any floating dtype, any device) -> uint8 [B, F, H, W, 3] RGB on
// the CPU, each value as diffusers' VideoProcessor.postprocess_video makes uint8 frames, and bit for
// bit as lib/video.ts floatToUint8 does: in float32, h = x / 2 + 0.5, NaN -> 0, clamp(h, 0, 1),
// round(h * 255) half to even. Converts a few frames at a time on the video's device (on a GPU only
// the bytes cross to the host), so it needs little memory beside the video and the frames.
at::Tensor videoToFrames(const at::Tensor& video);

}  // namespace wan
