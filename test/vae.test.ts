import { execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import path from 'node:path';

import { describe, expect, it } from 'vitest';

import type { NativeVae, TensorData } from '../binding.js';
import { planesToFrames } from '../lib/frames.js';
import { native } from '../lib/native.js';
import { maxRelError, numel } from '../lib/tensor.js';
import { FIXTURES, fixtureCase } from './helpers/fixtures.js';

const FAMILIES = ['t2v-a14b-tiny', 'ti2v-5b-tiny'] as const;
const vaes = new Map<string, Promise<NativeVae>>();
function vaeOf(family: string): Promise<NativeVae> {
  if (!vaes.has(family)) vaes.set(family, native().loadVae(path.join(FIXTURES, family, 'vae')));
  return vaes.get(family)!;
}

/** [1,3,H,W] image -> [1,3,F,H,W] video: the image then F-1 zero frames (I2V conditioning). */
function imageThenZeros(image: TensorData, frames: number): TensorData {
  const [b, c, h, w] = image.shape;
  const src = image.data as Float32Array;
  const out = new Float32Array(b * c * frames * h * w);
  for (let i = 0; i < b * c; i++) out.set(src.subarray(i * h * w, (i + 1) * h * w), i * frames * h * w);
  return { dtype: 'float32', shape: [b, c, frames, h, w], data: out };
}

/** Channels [from, from+count) of a [B,C,...] tensor. */
function channels(t: TensorData, from: number, count: number): TensorData {
  const [b, c, ...rest] = t.shape;
  const inner = numel(rest);
  const src = Float64Array.from(t.data as ArrayLike<number>);
  const out = new Float64Array(b * count * inner);
  for (let i = 0; i < b; i++) out.set(src.subarray((i * c + from) * inner, (i * c + from + count) * inner), i * count * inner);
  return { dtype: 'float64', shape: [b, count, ...rest], data: out };
}

function float64ToFloat32(t: TensorData): TensorData {
  return { dtype: 'float32', shape: t.shape, data: Float32Array.from(t.data as ArrayLike<number>) };
}

describe('Wan VAE parity (float32, CPU) with the reference', () => {
  for (const family of FAMILIES) {
    it(`${family}: vae_encode -> latent_mean, latent_logvar, latent_normalized`, async () => {
      const c = await fixtureCase(family, 'vae_encode');
      const vae = await vaeOf(family);
      const r = await vae.encode(c.input('video'));
      const tol = c.json.tolerance.fp32;
      const errors = {
        mean: maxRelError(r.mean, c.output('latent_mean')),
        logvar: maxRelError(r.logvar, c.output('latent_logvar')),
        normalized: maxRelError(r.normalized, c.output('latent_normalized')),
      };
      console.log(`${family} vae_encode max rel error`, errors, 'tolerance', tol);
      for (const e of Object.values(errors)) expect(e).toBeLessThanOrEqual(tol);
    });

    it(`${family}: vae_decode -> latents_denormalized, video`, async () => {
      const c = await fixtureCase(family, 'vae_decode');
      const vae = await vaeOf(family);
      const events: Array<{ step: number; totalSteps: number; stage: string }> = [];
      const r = await vae.decode(c.input('latents'), {}, undefined, (e) => events.push(e));
      const tol = c.json.tolerance.fp32;
      const errors = {
        denormalized: maxRelError(r.denormalized, c.output('latents_denormalized')),
        video: maxRelError(r.video, c.output('video')),
      };
      console.log(`${family} vae_decode max rel error`, errors, 'tolerance', tol);
      for (const e of Object.values(errors)) expect(e).toBeLessThanOrEqual(tol);
      // progress per latent frame (events may still be in flight when the promise settles)
      expect(events.length).toBeGreaterThan(0);
      expect(events[0]).toMatchObject({ stage: 'decode', step: 1, totalSteps: c.input('latents').shape[2] });
    });

    it(`${family}: vae_decode with output 'frames' -> the uint8 frames of its float video`, async () => {
      const c = await fixtureCase(family, 'vae_decode');
      const vae = await vaeOf(family);
      const { video } = await vae.decode(c.input('latents'));
      const r = await vae.decode(c.input('latents'), { output: 'frames' });
      expect(r).not.toHaveProperty('video');
      const [b, , f, h, w] = video.shape;
      expect(r.frames).toMatchObject({ dtype: 'uint8', shape: [b, f, h, w, 3] });
      // the JS reference formula, video by video ([3,F,H,W] planes -> F x H x W x RGB)
      const per = 3 * f * h * w;
      const expected = new Uint8Array(b * per);
      for (let i = 0; i < b; i++) expected.set(planesToFrames((video.data as Float32Array).subarray(i * per, (i + 1) * per), f, h, w), i * per);
      expect(Buffer.from(r.frames.data as Uint8Array).equals(Buffer.from(expected))).toBe(true);
    });
  }

  const pipelines: Array<[string, string]> = [
    ['t2v-a14b-tiny', 'pipeline'],
    ['i2v-a14b-tiny', 'pipeline'],
    ['ti2v-5b-tiny', 'pipeline_t2v'],
    ['ti2v-5b-tiny', 'pipeline_i2v'],
  ];
  for (const [family, name] of pipelines) {
    it(`${family}/${name}: final_latents -> decoder_input_latents, video`, async () => {
      const c = await fixtureCase(family, name);
      const vae = await vaeOf(family);
      const r = await vae.decode(float64ToFloat32(c.output('final_latents')));
      const tol = c.json.tolerance.fp32;
      const errors = {
        denormalized: maxRelError(r.denormalized, c.output('decoder_input_latents')),
        video: maxRelError(r.video, c.output('video')),
      };
      console.log(`${family}/${name} decode max rel error`, errors, 'tolerance', tol);
      for (const e of Object.values(errors)) expect(e).toBeLessThanOrEqual(tol);
    });
  }

  it('i2v-a14b-tiny/pipeline: condition latents = normalized VAE mean of [image, zeros x (F-1)]', async () => {
    const c = await fixtureCase('i2v-a14b-tiny', 'pipeline');
    const vae = await vaeOf('i2v-a14b-tiny');
    const r = await vae.encode(imageThenZeros(c.input('image'), c.json.params.num_frames));
    const condition = c.intermediate('condition');
    const err = maxRelError(r.normalized, channels(condition, 4, 16));
    console.log('i2v condition max rel error', err, 'tolerance', c.json.tolerance.fp32);
    expect(err).toBeLessThanOrEqual(c.json.tolerance.fp32);
  });

  it('ti2v-5b-tiny/pipeline_i2v: latent_condition = normalized VAE mean of the image as one frame', async () => {
    const c = await fixtureCase('ti2v-5b-tiny', 'pipeline_i2v');
    const vae = await vaeOf('ti2v-5b-tiny');
    const r = await vae.encode(imageThenZeros(c.input('image'), 1));
    const err = maxRelError(r.normalized, c.intermediate('latent_condition'));
    console.log('ti2v latent_condition max rel error', err, 'tolerance', c.json.tolerance.fp32);
    expect(err).toBeLessThanOrEqual(c.json.tolerance.fp32);
  });

  it('info() describes both VAE versions', async () => {
    expect((await vaeOf('t2v-a14b-tiny')).info()).toMatchObject({ zDim: 16, version: '2.1', scaleFactorSpatial: 8, scaleFactorTemporal: 4, dtype: 'float32', device: 'cpu' });
    const info = (await vaeOf('ti2v-5b-tiny')).info();
    expect(info).toMatchObject({ zDim: 48, version: '2.2', scaleFactorSpatial: 16, scaleFactorTemporal: 4 });
    expect(info.parameterCount).toBeGreaterThan(0);
  });
});

/** mean|out - ref| / max|ref| */
function meanRelError(out: TensorData, ref: TensorData): number {
  const a = out.data as Float32Array, b = ref.data as Float32Array;
  let sum = 0, max = 0;
  for (let i = 0; i < b.length; i++) { sum += Math.abs(a[i] - b[i]); max = Math.max(max, Math.abs(b[i])); }
  return sum / b.length / max;
}

function randomTensor(shape: number[], seed: number): TensorData {
  return native().randn(seed, shape);
}

describe('Wan VAE spatial tiling', () => {
  // 8 latent frames x 64x64 latents (512x512 pixels): 3x3 tiles of 256 px with 64 px overlap.
  // Tiling is not exact: the mid block's attention spans the whole frame and the convs' receptive
  // field exceeds the overlap. With these random weights and N(0,1) latents the deviation is large
  // at the worst pixel (measured 0.37 decode / 0.18 encode), small on average (bounds below).
  const TILED_MAX = 0.5;
  const TILED_MEAN = 0.02; // measured 0.008 decode, 0.007 encode
  it('tiled decode stays close to untiled decode on 3x3 tiles', async () => {
    const vae = await vaeOf('t2v-a14b-tiny');
    const latents = randomTensor([1, 16, 8, 64, 64], 7);
    const events: number[] = [];
    const untiled = await vae.decode(latents, { tiled: false });
    const tiled = await vae.decode(latents, { tiled: true }, undefined, (e) => events.push(e.totalSteps));
    expect(tiled.video.shape).toEqual([1, 3, 29, 512, 512]);
    expect(events[0]).toBe(9 * 8); // 9 tiles x 8 latent frames
    const err = maxRelError(tiled.video, untiled.video);
    const mean = meanRelError(tiled.video, untiled.video);
    console.log('tiled vs untiled decode: max rel error', err, 'mean', mean);
    expect(err).toBeGreaterThan(0); // it really tiled
    expect(err).toBeLessThanOrEqual(TILED_MAX);
    expect(mean).toBeLessThanOrEqual(TILED_MEAN);
  }, 900_000);

  it("'auto' does not tile when the untiled decode fits in free memory", async () => {
    const vae = await vaeOf('t2v-a14b-tiny');
    const latents = randomTensor([1, 16, 2, 40, 40], 9);
    const untiled = await vae.decode(latents, { tiled: false });
    const tiled = await vae.decode(latents, { tiled: true });
    const auto = await vae.decode(latents, { tiled: 'auto' });
    expect(maxRelError(tiled.video, untiled.video)).toBeGreaterThan(0);
    expect(maxRelError(auto.video, untiled.video)).toBe(0);
  }, 600_000);

  it('tiled encode stays close to untiled encode on 3x3 tiles', async () => {
    const vae = await vaeOf('t2v-a14b-tiny');
    const video = randomTensor([1, 3, 5, 512, 512], 8);
    for (let i = 0; i < video.data.length; i++) (video.data as Float32Array)[i] = Math.tanh((video.data as Float32Array)[i]);
    const untiled = await vae.encode(video, { tiled: false });
    const tiled = await vae.encode(video, { tiled: true });
    expect(tiled.mean.shape).toEqual([1, 16, 2, 64, 64]);
    const err = maxRelError(tiled.mean, untiled.mean);
    const mean = meanRelError(tiled.mean, untiled.mean);
    console.log('tiled vs untiled encode: max rel error', err, 'mean', mean);
    expect(err).toBeGreaterThan(0);
    expect(err).toBeLessThanOrEqual(TILED_MAX);
    expect(mean).toBeLessThanOrEqual(TILED_MEAN);
  }, 900_000);

  it("'auto' on the CPU tiles a real-size decode (it would need far more than 4 GB) and not a small one", () => {
    const tool = path.join(path.dirname(process.env.WAN_VIDEO_ADDON ?? 'build/Release/wan_video.node'), 'vae_memory');
    const estimate = (shape: string) =>
      JSON.parse(execFileSync(tool, ['--real', '2.1', '--shape', shape, '--estimate-only', '1'], { encoding: 'utf8' }));
    const real = estimate('1,16,21,90,160'); // 1280x720x81 latents
    expect(real.estimateUntiledBytes).toBeGreaterThan(4 * 1024 ** 3);
    expect(real.autoTiles).toBe(true);
    const small = estimate('1,16,2,40,40');
    expect(small.estimateUntiledBytes).toBeLessThan(4 * 1024 ** 3);
    expect(small.autoTiles).toBe(false);
  }, 120_000);

  it('the tiled decode needs less peak memory (RSS high-water mark, measured in a child process per mode)', () => {
    const tool = path.join(path.dirname(process.env.WAN_VIDEO_ADDON ?? 'build/Release/wan_video.node'), 'vae_memory');
    expect(existsSync(tool), `${tool} (built with the addon)`).toBe(true);
    const run = (tiled: boolean) =>
      JSON.parse(
        execFileSync(tool, ['--vae', path.join(FIXTURES, 't2v-a14b-tiny', 'vae'), '--shape', '1,16,3,64,64', '--tiled', tiled ? '1' : '0'], {
          encoding: 'utf8',
        }),
      );
    const untiled = run(false);
    const tiled = run(true);
    console.log('decode peak extra RSS (bytes): untiled', untiled.peakExtraBytes, 'estimate', untiled.estimateBytes, '| tiled', tiled.peakExtraBytes, 'estimate', tiled.estimateBytes);
    expect(untiled.tiled).toBe(false);
    expect(tiled.tiled).toBe(true);
    expect(tiled.peakExtraBytes).toBeLessThan(untiled.peakExtraBytes * 0.8);
    // the analytic estimate is an upper bound of the measurement
    expect(untiled.estimateBytes).toBeGreaterThanOrEqual(untiled.peakExtraBytes);
    expect(tiled.estimateBytes).toBeGreaterThanOrEqual(tiled.peakExtraBytes);
  }, 900_000);
});

describe('Wan VAE bad input', () => {
  const expectBadArgument = async (p: Promise<unknown>, message: RegExp) => {
    await expect(p).rejects.toMatchObject({ code: 'ERR_WAN_BAD_ARGUMENT', message: expect.stringMatching(message) });
  };

  it('encode rejects a wrong channel count, frame count or size, naming the expected shape', async () => {
    const vae = await vaeOf('ti2v-5b-tiny');
    const expected = /\[B, 3, F, H, W\] with F = 4k\+1 and H, W multiples of 16/;
    await expectBadArgument(vae.encode(randomTensor([1, 4, 1, 32, 32], 1)), expected);
    await expectBadArgument(vae.encode(randomTensor([1, 3, 4, 32, 32], 1)), expected);
    await expectBadArgument(vae.encode(randomTensor([1, 3, 1, 40, 32], 1)), expected);
    await expectBadArgument(vae.encode(randomTensor([1, 3, 1, 32, 24], 1)), expected);
    await expectBadArgument(vae.encode(randomTensor([3, 1, 32, 32], 1)), expected);
    // still usable afterwards
    expect((await vae.encode(randomTensor([1, 3, 1, 32, 32], 1))).mean.shape).toEqual([1, 48, 1, 2, 2]);
  });

  it('Wan2.1 encode checks multiples of 8', async () => {
    const vae = await vaeOf('t2v-a14b-tiny');
    await expectBadArgument(vae.encode(randomTensor([1, 3, 1, 36, 32], 1)), /multiples of 8; got \[1, 3, 1, 36, 32\]/);
  });

  it('decode rejects latents with the wrong channel count or rank', async () => {
    const vae = await vaeOf('ti2v-5b-tiny');
    await expectBadArgument(vae.decode(randomTensor([1, 16, 2, 2, 2], 1)), /latents must be .*\[B, 48, F', H', W'\]; got \[1, 16, 2, 2, 2\]/);
    await expectBadArgument(vae.decode(randomTensor([48, 2, 2, 2], 1)), /\[B, 48, F', H', W'\]/);
  });

  it('tiling options are checked', async () => {
    const vae = await vaeOf('t2v-a14b-tiny');
    const latents = randomTensor([1, 16, 1, 40, 40], 2);
    await expectBadArgument(vae.decode(latents, { tiled: true, tileSize: 100 }), /tileSize/);
    await expectBadArgument(vae.decode(latents, { tiled: true, tileOverlap: 256 }), /tileOverlap/);
    // option parsing errors are thrown synchronously by the binding
    await expectBadArgument(Promise.resolve().then(() => vae.decode(latents, { tiled: 'sometimes' as any })), /'tiled'/);
    await expectBadArgument(Promise.resolve().then(() => vae.decode(latents, { output: 'uint8' as any })), /'output' must be 'video' or 'frames'/);
  });

  it('a missing or mis-shaped tensor is ERR_WAN_BAD_CHECKPOINT naming it', async () => {
    const { mkdtempSync, copyFileSync, writeFileSync, readFileSync } = await import('node:fs');
    const os = await import('node:os');
    const dir = mkdtempSync(path.join(os.tmpdir(), 'vae-bad-'));
    const src = path.join(FIXTURES, 't2v-a14b-tiny', 'vae');
    // a Wan2.1 config with z_dim 48 over the z 16 weights: the first decoder/encoder tensor mismatches
    const config = JSON.parse(readFileSync(path.join(src, 'config.json'), 'utf8'));
    config.z_dim = 48;
    config.latents_mean = Array(48).fill(0);
    config.latents_std = Array(48).fill(1);
    writeFileSync(path.join(dir, 'config.json'), JSON.stringify(config));
    copyFileSync(path.join(src, 'diffusion_pytorch_model.safetensors'), path.join(dir, 'diffusion_pytorch_model.safetensors'));
    await expect(native().loadVae(dir)).rejects.toMatchObject({ code: 'ERR_WAN_BAD_CHECKPOINT', message: expect.stringMatching(/encoder\.conv_out\.weight/) });
    // the Wan2.2 config over the Wan2.1 weights: a missing tensor
    copyFileSync(path.join(FIXTURES, 'ti2v-5b-tiny', 'vae', 'config.json'), path.join(dir, 'config.json'));
    await expect(native().loadVae(dir)).rejects.toMatchObject({ code: 'ERR_WAN_BAD_CHECKPOINT', message: expect.stringMatching(/tensor '.*'/) });
  });

  it('dispose makes later calls ERR_WAN_DISPOSED', async () => {
    const vae = await native().loadVae(path.join(FIXTURES, 't2v-a14b-tiny', 'vae'));
    vae.dispose();
    expect(() => vae.info()).toThrow(expect.objectContaining({ code: 'ERR_WAN_DISPOSED' }));
    await expect(Promise.resolve().then(() => vae.decode(randomTensor([1, 16, 1, 2, 2], 1)))).rejects.toMatchObject({ code: 'ERR_WAN_DISPOSED' });
  });
});
