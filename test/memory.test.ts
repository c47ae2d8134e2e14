import { describe, expect, it } from 'vitest';

import {
  DIT_ATTENTION_DTYPE_COPIES,
  DIT_ATTENTION_F32_BYTES,
  ditTokens,
  estimateMemory,
  OVERHEAD_BYTES,
  describeFit,
  suggestFit,
  suggestOffload,
  TEXT_ENCODE_ACTIVATION_BYTES,
  VAE_DEFAULT_TILE,
  VAE_WORKSET_FACTOR,
  type MemoryModel,
} from '../lib/memory.js';

const GB = 1e9;
const GiB = 1024 ** 3;

// T2V-A14B: two 14.29e9-parameter experts (28.6 GB each in bf16), umt5-xxl 5.68e9 (11.4 GB bf16),
// the Wan2.1 VAE 0.127e9 (0.5 GB float32), a block of 351e6 parameters.
const a14b: MemoryModel = {
  family: 't2v-a14b',
  parameters: { transformer: 14.29e9, transformer_2: 14.29e9, text_encoder: 5.68e9, vae: 0.127e9 },
  largestBlockParameters: 351e6,
  dit: { dim: 5120, ffnDim: 13824, patchSize: [1, 2, 2] },
  vae: { scaleSpatial: 8, scaleTemporal: 4, topWidth: 96, patchSize: 1 },
};

// TI2V-5B: one 5.0e9 expert, the same text encoder, the Wan2.2 VAE (0.705e9, patch 2, 16x spatial).
const ti2v: MemoryModel = {
  family: 'ti2v-5b',
  parameters: { transformer: 5.0e9, text_encoder: 5.68e9, vae: 0.705e9 },
  largestBlockParameters: 164e6,
  dit: { dim: 3072, ffnDim: 14336, patchSize: [1, 2, 2] },
  vae: { scaleSpatial: 16, scaleTemporal: 4, topWidth: 256, patchSize: 2 },
};

describe('estimateMemory', () => {
  it('counts the DiT tokens of the real sizes', () => {
    expect(ditTokens(a14b, { width: 1280, height: 720, numFrames: 81 })).toBe(75_600);
    expect(ditTokens(a14b, { width: 832, height: 480, numFrames: 81 })).toBe(21 * 30 * 52);
    expect(ditTokens(ti2v, { width: 1280, height: 704, numFrames: 121 })).toBe(27_280);
  });

  it('follows the stated formula per offload mode (A14B 720p, bf16, text encoder on the CPU)', () => {
    const e = estimateMemory(a14b, { width: 1280, height: 720, numFrames: 81, dtype: 'bfloat16', textEncoderOnDevice: false });
    const expert = 14.29e9 * 2;
    const vae = 0.127e9 * 4;
    // Attention phase dominates the DiT: 75,600 tokens x 5120 x (5 x 2 + 18) bytes = 10.8 GB.
    const dit = 75_600 * 5120 * (DIT_ATTENTION_DTYPE_COPIES * 2 + DIT_ATTENTION_F32_BYTES);
    expect(dit).toBeCloseTo(10.84 * GB, -8);
    // Whole-frame decode: 4 frames x 1280 x 720 x 96 channels x factor x 4 B, plus the float32 video.
    const video = 81 * 1280 * 720 * 3 * 4;
    const decode = 4 * 1280 * 720 * 96 * VAE_WORKSET_FACTOR * 4 + video;
    expect(e.none).toMatchObject({ phase: 'decode', weightsBytes: 2 * expert + vae, activationBytes: decode });
    expect(e.none.totalBytes).toBe(2 * expert + vae + decode + OVERHEAD_BYTES);
    expect(e.model).toMatchObject({ phase: 'denoise', weightsBytes: expert, activationBytes: dit });
    expect(e.model.totalBytes).toBe(expert + dit + OVERHEAD_BYTES);
    // Sequential: non-block weights (8 d^2 + 4352 d) + three blocks, and the held CFG pass's hidden
    // state (75,600 x 5120 bf16); decode in 256-pixel tiles.
    const streamed = (8 * 5120 * 5120 + 4352 * 5120 + 3 * 351e6) * 2;
    const heldPass = 75_600 * 5120 * 2;
    const tiledDecode = 4 * VAE_DEFAULT_TILE ** 2 * 96 * VAE_WORKSET_FACTOR * 4 + video;
    expect(e.sequential).toMatchObject({ phase: 'denoise', activationBytes: dit + heldPass });
    expect(e.sequential.totalBytes).toBe(Math.max(streamed + dit + heldPass, vae + tiledDecode) + OVERHEAD_BYTES);
  });

  it('counts the text encoder only on the device and frees it after encoding', () => {
    const request = { width: 832, height: 480, numFrames: 81, dtype: 'bfloat16' as const };
    const onCpu = estimateMemory(a14b, { ...request, textEncoderOnDevice: false });
    const onGpu = estimateMemory(a14b, { ...request, textEncoderOnDevice: true });
    // 'none' loads everything up front: at 480p the text phase (experts + VAE + encoder) is the peak.
    expect(onGpu.none.phase).toBe('text');
    expect(onGpu.none.weightsBytes).toBe((2 * 14.29e9 + 5.68e9) * 2 + 0.127e9 * 4);
    expect(onGpu.none.activationBytes).toBe(TEXT_ENCODE_ACTIVATION_BYTES);
    expect(onCpu.none.phase).not.toBe('text');
    // 'model' runs the 11.4 GB encoder alone, then the 28.6 GB expert: the expert sets the peak.
    expect(onGpu.model.totalBytes).toBe(onCpu.model.totalBytes);
  });

  it('decodes whole frames unless a tile is asked for (TI2V-5B, Wan2.2 VAE at half resolution)', () => {
    const request = { width: 1280, height: 704, numFrames: 121, dtype: 'bfloat16' as const, textEncoderOnDevice: false };
    const whole = estimateMemory(ti2v, request);
    const tiled = estimateMemory(ti2v, { ...request, vaeTile: 256 });
    const video = 121 * 1280 * 704 * 3 * 4;
    const wholeDecode = 4 * ((1280 * 704) / 4) * 256 * VAE_WORKSET_FACTOR * 4 + video;
    const tiledDecode = 4 * ((256 * 256) / 4) * 256 * VAE_WORKSET_FACTOR * 4 + video;
    const denoise = 5.0e9 * 2 + 27_280 * (2 * 2 * 14336 + (2 * 2 + 8) * 3072); // FFN phase dominates at dim 3072
    expect(whole.model.totalBytes).toBe(Math.max(denoise, 0.705e9 * 4 + wholeDecode) + OVERHEAD_BYTES);
    expect(tiled.model.totalBytes).toBe(Math.max(denoise, 0.705e9 * 4 + tiledDecode) + OVERHEAD_BYTES);
    expect(tiled.model.phase).toBe('denoise');
  });

  it("puts the issue's H100 targets within reach of the estimate", () => {
    // T2V-A14B 720p on one 80 GB H100: 'none' <= 75 GB, 'model' <= 45 GB (text encoder on the CPU).
    const a = estimateMemory(a14b, { width: 1280, height: 720, numFrames: 81, dtype: 'bfloat16', textEncoderOnDevice: false });
    expect(a.none.totalBytes).toBeLessThan(75 * GB);
    expect(a.model.totalBytes).toBeLessThan(45 * GB);
    // TI2V-5B 720p with 'model' and tiled decode: <= 22 GB.
    const t = estimateMemory(ti2v, { width: 1280, height: 704, numFrames: 121, dtype: 'bfloat16', textEncoderOnDevice: false, vaeTile: 256 });
    expect(t.model.totalBytes).toBeLessThan(22 * GB);
  });
});

describe('suggestOffload', () => {
  const e = estimateMemory(a14b, { width: 1280, height: 720, numFrames: 81, dtype: 'bfloat16', textEncoderOnDevice: false });

  it('names the fastest mode that fits', () => {
    expect(suggestOffload(e, 80 * GiB)).toBe('none');
    expect(suggestOffload(e, e.none.totalBytes)).toBe('none');
    expect(suggestOffload(e, e.none.totalBytes - 1)).toBe('model');
    expect(suggestOffload(e, 48 * GiB)).toBe('model');
    expect(suggestOffload(e, 24 * GiB)).toBe('sequential');
  });

  it('returns undefined when no mode fits', () => {
    expect(suggestOffload(e, e.sequential.totalBytes - 1)).toBeUndefined();
    expect(suggestOffload(e, 0)).toBeUndefined();
  });

  it('orders the modes none > model > sequential for a real A14B request', () => {
    expect(e.none.totalBytes).toBeGreaterThan(e.model.totalBytes);
    expect(e.model.totalBytes).toBeGreaterThan(e.sequential.totalBytes);
  });
});

describe('suggestFit (the advice of ERR_WAN_OOM on a GPU)', () => {
  const a480 = { width: 832, height: 480, numFrames: 81, dtype: 'bfloat16' as const };

  it('changes nothing but the offload mode when that is enough', () => {
    const request = { ...a480, textEncoderOnDevice: false, vaeTile: 0 };
    const e = estimateMemory(a14b, request);
    expect(suggestFit(a14b, request, 80 * GiB)).toEqual({ offload: 'none', textEncoderOnCpu: false, tiledDecode: false, totalBytes: e.none.totalBytes });
    expect(suggestFit(a14b, request, e.model.totalBytes)).toMatchObject({ offload: 'model', textEncoderOnCpu: false, tiledDecode: false });
  });

  it("moves the text encoder to the CPU when its visit is what does not fit (A14B 480p on a 12 GiB GPU)", () => {
    const request = { ...a480, textEncoderOnDevice: true };
    const onGpu = estimateMemory(a14b, request);
    const onCpu = estimateMemory(a14b, { ...request, textEncoderOnDevice: false });
    // The text encoder alone (11.4 GB) does not fit; every mode but with it on the CPU 'sequential' does.
    expect(onGpu.sequential).toMatchObject({ phase: 'text' });
    expect(onGpu.sequential.totalBytes).toBeGreaterThan(12 * GiB);
    expect(onCpu.sequential.totalBytes).toBeLessThan(12 * GiB);
    expect(suggestFit(a14b, request, 12 * GiB)).toEqual({ offload: 'sequential', textEncoderOnCpu: true, tiledDecode: false, totalBytes: onCpu.sequential.totalBytes });
    // Already on the CPU: nothing to move, and nothing else fits.
    expect(suggestFit(a14b, { ...request, textEncoderOnDevice: false }, onCpu.sequential.totalBytes - 1)).toBeUndefined();
  });

  it('tiles the decode when whole frames are what does not fit', () => {
    const request = { width: 1280, height: 704, numFrames: 121, dtype: 'bfloat16' as const, textEncoderOnDevice: false, vaeTile: 0 };
    const whole = estimateMemory(ti2v, request);
    const tiled = estimateMemory(ti2v, { ...request, vaeTile: VAE_DEFAULT_TILE });
    // TI2V-5B 720p: the whole-frame decode (~8.7 GB at the Wan2.2 VAE's top level) outweighs the
    // DiT's activations, so with tiled: false even 'sequential' (which then decodes whole frames) needs more.
    const device = tiled.sequential.totalBytes;
    expect(whole.sequential).toMatchObject({ phase: 'decode' });
    expect(whole.sequential.totalBytes).toBeGreaterThan(device);
    expect(suggestFit(ti2v, request, device)).toEqual({ offload: 'sequential', textEncoderOnCpu: false, tiledDecode: true, totalBytes: device });
    // A request that tiles already is never told to.
    expect(suggestFit(ti2v, { ...request, vaeTile: VAE_DEFAULT_TILE }, device - 1)?.tiledDecode ?? false).toBe(false);
  });

  it('never names a mode that keeps more resident than the one that ran out of memory', () => {
    const request = { width: 1280, height: 704, numFrames: 121, dtype: 'bfloat16' as const, textEncoderOnDevice: false, vaeTile: VAE_DEFAULT_TILE };
    const estimates = estimateMemory(ti2v, request);
    const device = estimates.none.totalBytes; // by the estimate, everything resident fits
    expect(suggestFit(ti2v, request, device)?.offload).toBe('none');
    // But 'model' ran out: the advice stays with 'model' (other memory was in use) or goes further.
    expect(suggestFit(ti2v, request, device, 'model')).toMatchObject({ offload: 'model', textEncoderOnCpu: false, tiledDecode: false });
    expect(suggestFit(ti2v, request, device, 'sequential')).toMatchObject({ offload: 'sequential' });
    expect(suggestFit(ti2v, request, estimates.sequential.totalBytes - 1, 'sequential')).toBeUndefined();
  });

  it('counts the activations and the decode of every video of a batch', () => {
    const one = estimateMemory(a14b, { ...a480, batch: 1 });
    const three = estimateMemory(a14b, { ...a480, batch: 3 });
    expect([one.model.phase, three.model.phase]).toEqual(['denoise', 'denoise']);
    expect(three.model.weightsBytes).toBe(one.model.weightsBytes);
    expect(three.model.activationBytes).toBeCloseTo(3 * one.model.activationBytes, -3);
    expect(three.none.totalBytes).toBeGreaterThan(one.none.totalBytes);
    expect(estimateMemory(a14b, a480).model.totalBytes).toBe(one.model.totalBytes); // default: one video
  });

  it('is undefined when no change fits', () => {
    expect(suggestFit(a14b, { width: 1280, height: 720, numFrames: 81, dtype: 'bfloat16' }, 4 * GiB)).toBeUndefined();
  });

  it('words the change as load and generate options', () => {
    expect(describeFit({ offload: 'sequential', textEncoderOnCpu: true, tiledDecode: false, totalBytes: 10 * GiB }, 'model', 12 * GiB)).toBe(
      "Loading with { offload: 'sequential', textEncoderDevice: 'cpu' } would fit (about 10.0 GiB of 12.0 GiB).",
    );
    expect(describeFit({ offload: 'model', textEncoderOnCpu: false, tiledDecode: true, totalBytes: 20 * GiB }, 'model', 24 * GiB)).toBe(
      'Generating with tiled: true would fit (about 20.0 GiB of 24.0 GiB).',
    );
    expect(describeFit({ offload: 'model', textEncoderOnCpu: false, tiledDecode: true, totalBytes: 20 * GiB }, 'none', 24 * GiB)).toBe(
      "Loading with { offload: 'model' } and generating with tiled: true would fit (about 20.0 GiB of 24.0 GiB).",
    );
    // The estimate fits as things are: the OOM came from memory the estimate does not see.
    expect(describeFit({ offload: 'none', textEncoderOnCpu: false, tiledDecode: false, totalBytes: 20 * GiB }, 'none', 24 * GiB)).toMatch(
      /says it fits, so other memory was in use/,
    );
  });
});
