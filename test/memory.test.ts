import { describe, expect, it } from 'vitest';

import { DIT_DIM_FACTOR, DIT_FFN_FACTOR, estimateMemory, OVERHEAD_BYTES, VAE_WORKSET_FACTOR, type MemoryModel } from '../lib/memory.js';

// T2V-A14B-like numbers (parameter counts rounded).
const model: MemoryModel = {
  family: 't2v-a14b',
  parameters: { transformer: 14e9, transformer_2: 14e9, text_encoder: 5.7e9, vae: 0.127e9 },
  largestBlockParameters: 0.35e9,
  dit: { dim: 5120, ffnDim: 13824, patchSize: [1, 2, 2] },
  vae: { scaleSpatial: 8, scaleTemporal: 4, topWidth: 96, patchSize: 1 },
};

describe('estimateMemory', () => {
  it('follows the stated formula per offload mode', () => {
    const e = estimateMemory(model, { width: 1280, height: 720, numFrames: 81, dtype: 'bfloat16' });
    const tokens = 21 * 45 * 80; // latent frames x (720/8/2) x (1280/8/2)
    const dit = tokens * (DIT_DIM_FACTOR * 5120 + DIT_FFN_FACTOR * 13824) * 2;
    const vae = 4 * 1280 * 720 * 96 * VAE_WORKSET_FACTOR * 4;
    const activations = Math.max(dit, vae);
    expect(e.none.weightsBytes).toBe((14e9 + 14e9 + 5.7e9) * 2 + 0.127e9 * 4);
    expect(e.model.weightsBytes).toBe(14e9 * 2);
    expect(e.sequential.weightsBytes).toBe(0.35e9 * 2);
    for (const mode of ['none', 'model', 'sequential'] as const) {
      expect(e[mode].activationBytes).toBe(activations);
      expect(e[mode].totalBytes).toBe(e[mode].weightsBytes + activations + OVERHEAD_BYTES);
    }
  });

  it('leaves the text encoder out with --t5-cpu and scales with the dtype', () => {
    const onCpu = estimateMemory(model, { width: 832, height: 480, numFrames: 81, dtype: 'float32', textEncoderOnDevice: false });
    expect(onCpu.none.weightsBytes).toBe((14e9 + 14e9) * 4 + 0.127e9 * 4);
  });
});
