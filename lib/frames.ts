// Float video -> 8-bit RGB frames in JS: the reference formula. The native pipeline makes the same
// bytes on its worker thread (native/pipeline/video_frames); this is what they are tested against.
// No dependencies (lib/parity.ts runs from a bare dist/ on the GPU machine).

// float32 arithmetic: a single double operation rounded to float32 equals the float32 operation.
const f32 = Math.fround;

// numpy's round(): half to even.
function roundHalfEven(x: number): number {
  const r = Math.round(x);
  return r - x === 0.5 && r % 2 !== 0 ? r - 1 : r;
}

/**
 * One value in [-1, 1] -> uint8 exactly as diffusers' VideoProcessor.postprocess_video does it
 * for uint8 frames: denormalize `(x / 2 + 0.5).clamp(0, 1)` in float32, then numpy_to_pil's
 * `(x * 255).round().astype(uint8)` (float32, round half to even). NaN becomes 0.
 * Note: diffusers' export_to_video of 'np' frames and Wan2.2's save_video truncate instead
 * (`(x * 255).astype(uint8)`), which darkens every value by half a level on average; we round.
 */
export function floatToUint8(x: number): number {
  const h = f32(f32(f32(x) / 2) + 0.5);
  if (!(h > 0)) return 0; // also NaN
  if (h >= 1) return 255;
  return roundHalfEven(f32(h * 255));
}

/** One video's [3, F, H, W] planes in [-1, 1] -> F x H x W x RGB bytes (floatToUint8 per value). */
export function planesToFrames(src: ArrayLike<number>, numFrames: number, height: number, width: number): Uint8Array {
  const plane = numFrames * height * width; // one channel of the whole video
  const out = new Uint8Array(plane * 3);
  for (let c = 0; c < 3; c++) {
    const base = c * plane;
    for (let i = 0; i < plane; i++) out[i * 3 + c] = floatToUint8(src[base + i]);
  }
  return out;
}
