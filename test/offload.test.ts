// The offload modes on the CPU. There an upload returns the very tensor, so 'model' and
// 'sequential' run the GPU's code path (expert swaps, block streaming with prefetch, the text
// encoder's visit) at no cost, and must give bit-identical results to 'none'. The C++ checks
// (native/tools/offload_tests.cpp) cover the host arena and each DiT placement's device bytes.
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

import { describe, expect, it } from 'vitest';

import { nativePath } from '../lib/native.js';
import { WanPipeline } from '../lib/pipeline.js';
import type { GenerateOptions, Offload, ProgressEvent } from '../lib/types.js';
import { FIXTURES } from './helpers/fixtures.js';

const TINY = path.join(path.dirname(fileURLToPath(import.meta.url)), '..', 'models', 'tiny');
// 4 steps at the default shift: three high-noise steps, then a low-noise one (one expert swap).
const T2V: GenerateOptions = { prompt: 'a red fox in the snow', width: 48, height: 32, numFrames: 5, steps: 4, seed: 7 };

async function run(dir: string, offload: Offload, options: GenerateOptions) {
  const pipe = await WanPipeline.load(dir, { offload });
  try {
    const residentAfterLoad = pipe.info().residentWeightBytes;
    const experts: (string | undefined)[] = [];
    const video = await pipe.generate({ ...options, onProgress: (e: ProgressEvent) => e.stage === 'denoise' && experts.push(e.expert) });
    // What stays on the device between generations is the same before and after one.
    expect(pipe.info().residentWeightBytes, `${offload}: resident bytes after a generation`).toBe(residentAfterLoad);
    expect(pipe.info().offload).toBe(offload);
    return { frames: Buffer.from(video.frames), latents: Buffer.from(video.latents!.data.buffer), experts, resident: residentAfterLoad };
  } finally {
    await pipe.dispose();
  }
}

/** Runs 'none', then 'model' and 'sequential', and expects the same experts, latents and frames. */
async function expectSameAsNone(dir: string, options: GenerateOptions) {
  const none = await run(dir, 'none', options);
  expect(none.resident).toBeGreaterThan(0);
  for (const mode of ['model', 'sequential'] as const) {
    const r = await run(dir, mode, options);
    // 'model' keeps nothing on the device between generations; 'sequential' the DiT's outer layers.
    if (mode === 'model') expect(r.resident, mode).toBe(0);
    else expect(r.resident > 0 && r.resident < none.resident, `${mode}: ${r.resident} of ${none.resident} bytes resident`).toBe(true);
    expect(r.experts, mode).toEqual(none.experts);
    expect(r.latents.equals(none.latents), `${mode}: latents bit-identical`).toBe(true);
    expect(r.frames.equals(none.frames), `${mode}: frames bit-identical`).toBe(true);
  }
  return none;
}

describe('offload modes on the CPU', () => {
  it('offload_tests passes every check (host arena; DiT resident, offloaded, streamed; VAE visits)', () => {
    const exe = path.join(path.dirname(nativePath()), 'offload_tests');
    expect(existsSync(exe), `${exe} is built with the addon (WAN_BUILD_TOOLS)`).toBe(true);
    const r = spawnSync(exe, [FIXTURES], { encoding: 'utf8', timeout: 120_000 });
    expect(r.status, r.stdout + r.stderr).toBe(0);
    expect(r.stdout).toContain('ok   offloaded after upload(): output and every block\'s output bit-identical to resident');
    expect(r.stdout).toContain('ok   streamed: only the outer layers stay on the device');
    expect(r.stdout).toContain('ok   a failed visit puts every weight back and is not active');
    expect(r.stdout).toMatch(/ok   ti2v-5b-tiny VAE 2.2: forEachWeight reaches every weight/);
    expect(r.stdout).toContain('all passed 0');
  });

  it("T2V-A14B: 'model' and 'sequential' give the same video as 'none', experts swapping mid-run", async () => {
    const none = await expectSameAsNone(TINY, T2V);
    expect(none.experts).toEqual(['high-noise', 'high-noise', 'high-noise', 'low-noise']);
  });

  it("TI2V-5B (one expert, per-token timesteps): 'model' and 'sequential' match 'none'", async () => {
    const embeds = { dtype: 'float32' as const, shape: [1, 512, 32], data: new Float32Array(512 * 32).map((_, i) => Math.sin(i)) };
    const opts: GenerateOptions = { width: 64, height: 64, numFrames: 5, steps: 3, seed: 3, promptEmbeds: embeds, negativePromptEmbeds: { ...embeds, data: new Float32Array(512 * 32) } };
    const none = await expectSameAsNone(path.join(FIXTURES, 'ti2v-5b-tiny'), opts);
    expect(none.experts).toEqual(['transformer', 'transformer', 'transformer']); // one denoise event per step, one expert
  });

  it("I2V-A14B (the VAE visits to encode the image, then to decode): 'model' and 'sequential' match 'none'", async () => {
    const embeds = { dtype: 'float32' as const, shape: [1, 512, 32], data: new Float32Array(512 * 32).map((_, i) => Math.cos(i)) };
    const image = { data: new Uint8Array(32 * 48 * 3).map((_, i) => (i * 7) % 256), width: 32, height: 48 };
    const opts: GenerateOptions = { width: 32, height: 48, numFrames: 5, steps: 4, seed: 5, image, promptEmbeds: embeds, negativePromptEmbeds: { ...embeds, data: new Float32Array(512 * 32) } };
    const none = await expectSameAsNone(path.join(FIXTURES, 'i2v-a14b-tiny'), opts);
    expect(new Set(none.experts).size, 'both experts run').toBe(2);
  });

  it("'model': an abort while an expert is on the device leaves the pipeline usable and exact", async () => {
    const reference = await run(TINY, 'model', T2V);
    const pipe = await WanPipeline.load(TINY, { offload: 'model' });
    try {
      const controller = new AbortController();
      const err = await pipe
        .generate({
          ...T2V,
          steps: 20,
          signal: controller.signal,
          onProgress: (e) => e.stage === 'denoise' && e.step === 3 && controller.abort(),
        })
        .catch((e) => e);
      expect(err.code).toBe('ERR_WAN_ABORTED');
      const video = await pipe.generate(T2V);
      expect(Buffer.from(video.frames).equals(reference.frames)).toBe(true);
    } finally {
      await pipe.dispose();
    }
  });
});
