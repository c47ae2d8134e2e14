// The float video -> uint8 frames conversion runs in the native job (native/pipeline/video_frames):
// bit for bit lib/video.ts floatToUint8, in the same [F, H, W, RGB] layout, and generate()/decode()
// build their Videos from those frames, keeping the float video only with returnFloat.
import path from 'node:path';
import { fileURLToPath } from 'node:url';

import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import type { TensorData } from '../binding.js';
import { native } from '../lib/native.js';
import { WanPipeline } from '../lib/pipeline.js';
import { runtimeInfo } from '../lib/runtime.js';
import type { GenerateOptions } from '../lib/types.js';
import { floatToUint8, Video } from '../lib/video.js';

const TINY = path.join(path.dirname(fileURLToPath(import.meta.url)), '..', 'models', 'tiny');
const SMALL: GenerateOptions = { prompt: 'a red fox in the snow', width: 48, height: 32, numFrames: 5, steps: 2, seed: 3 };

/** float32 `x` moved by `ulps` units in the last place (through zero as the bit patterns go). */
function ulpStep(x: number, ulps: number): number {
  const f = new Float32Array([x]);
  const i = new Int32Array(f.buffer);
  // Sign-magnitude bits -> a monotonic integer line, step, and back.
  const line = i[0] < 0 ? -(i[0] & 0x7fffffff) : i[0];
  const moved = line + ulps;
  i[0] = moved < 0 ? -moved | 0x80000000 : moved;
  return f[0];
}

/** Values that probe every branch and every rounding tie of the conversion. */
function edgeValues(): Float32Array {
  const v: number[] = [
    Number.NaN, Infinity, -Infinity, -1, 1, 0, -0, 2, -2, 3.4028234663852886e38, -3.4028234663852886e38,
    1.401298464324817e-45, -1.401298464324817e-45, 1.1754943508222875e-38, -1.1754943508222875e-38, -1e-7, 1e-7, -1e-30,
    ulpStep(-1, 1), ulpStep(-1, -1), ulpStep(1, -1), ulpStep(1, 1), 0.16470590233802795, 0.737254798412323, 0.5333333015441895,
  ];
  for (let k = 0; k < 255; k++) {
    // The input whose level is k + 0.5 in exact arithmetic, and its float32 neighbours.
    const x = Math.fround(((k + 0.5) / 255) * 2 - 1);
    for (let u = -4; u <= 4; u++) v.push(ulpStep(x, u));
    // Inputs that make h * 255 exactly k + 0.5 in float32, where they exist.
    const h = Math.fround((k + 0.5) / 255);
    for (let u = -2; u <= 2; u++) v.push(Math.fround((ulpStep(h, u) - 0.5) * 2));
  }
  let seed = 12345;
  const rand = () => ((seed = (seed * 1103515245 + 12345) >>> 0) / 2 ** 32);
  for (let i = 0; i < 60_000; i++) v.push((rand() * 2.4 - 1.2));
  while (v.length % 3 !== 0) v.push(0.25);
  return Float32Array.from(v);
}

function rowOf(video: TensorData, i: number): TensorData {
  const per = video.shape.slice(1).reduce((a, b) => a * b, 1);
  return { dtype: 'float32', shape: [1, ...video.shape.slice(1)], data: (video.data as Float32Array).subarray(i * per, (i + 1) * per) };
}

function expectSameBytes(actual: Uint8Array, expected: Uint8Array): void {
  expect(actual.length).toBe(expected.length);
  let mismatches = 0;
  let first = -1;
  for (let i = 0; i < expected.length; i++) if (actual[i] !== expected[i] && mismatches++ === 0) first = i;
  expect({ mismatches, first }).toEqual({ mismatches: 0, first: -1 });
}

describe('native video -> frames conversion (_testToFrames)', () => {
  const devices = ['cpu', ...(runtimeInfo().cudaAvailable ? ['cuda'] : [])];

  it.each(devices)('on %s equals floatToUint8 for NaN, ±Inf, ±1, rounding ties and their neighbours, tiny values', (device) => {
    const values = edgeValues();
    // There are real float32 ties among them (h * 255 exactly k + 0.5), so half-to-even is tested.
    const ties = Array.from(values).filter((x) => {
      const p = Math.fround(Math.fround(Math.fround(x / 2) + 0.5) * 255);
      return p > 0 && p < 255 && p - Math.floor(p) === 0.5;
    });
    expect(ties.length).toBeGreaterThan(100);
    const n = values.length / 3;
    const video: TensorData = { dtype: 'float32', shape: [1, 3, n, 1, 1], data: values };
    const frames = native()._testToFrames(video, device);
    expect(frames.dtype).toBe('uint8');
    expect(frames.shape).toEqual([1, n, 1, 1, 3]);
    const expected = new Uint8Array(values.length);
    for (let c = 0; c < 3; c++) for (let f = 0; f < n; f++) expected[f * 3 + c] = floatToUint8(values[c * n + f]);
    expectSameBytes(frames.data as Uint8Array, expected);
    expectSameBytes(frames.data as Uint8Array, Video.fromFloat(video, 16).frames);
    const bytes = frames.data as Uint8Array;
    expect([bytes[0], bytes[3], bytes[6], bytes[9], bytes[12]]).toEqual([0, 255, 0, 0, 255]);  // NaN, Inf, -Inf, -1, 1
  });

  // The second shape is converted in chunks of 2 frames on the CPU (~1M values a chunk): 2 + 2 + 1.
  it.each(devices.flatMap((d) => [[d, [2, 3, 7, 5, 6]], [d, [2, 3, 5, 256, 272]]] as Array<[string, number[]]>))(
    'on %s lays a batch %j out as [B, F, H, W, RGB], each row as Video.fromFloat does', (device, shape) => {
    const data = Float32Array.from({ length: shape.reduce((a, b) => a * b, 1) }, (_, i) => Math.sin(i * 0.37) * 1.1);
    const video: TensorData = { dtype: 'float32', shape, data };
    const frames = native()._testToFrames(video, device);
    const [, , f, h, w] = shape;
    expect(frames.shape).toEqual([2, f, h, w, 3]);
    const per = f * h * w * 3;
    for (let b = 0; b < 2; b++) expectSameBytes((frames.data as Uint8Array).subarray(b * per, (b + 1) * per), Video.fromFloat(rowOf(video, b), 16).frames);
  });

  it('rejects what is not a [B, 3, F, H, W] float video', () => {
    for (const shape of [[3, 2, 2, 2], [1, 4, 1, 2, 2]]) {
      const video: TensorData = { dtype: 'float32', shape, data: new Float32Array(shape.reduce((a, b) => a * b, 1)) };
      expect(() => native()._testToFrames(video), String(shape)).toThrow(expect.objectContaining({ code: 'ERR_WAN_BAD_ARGUMENT' }));
    }
    expect(() => native()._testToFrames({ dtype: 'uint8', shape: [1, 3, 1, 1, 1], data: new Uint8Array(3) })).toThrow(expect.objectContaining({ code: 'ERR_WAN_BAD_ARGUMENT' }));
  });
});

describe('generate() and decode() frames come from the native job', () => {
  let pipe: WanPipeline;
  beforeAll(async () => {
    pipe = await WanPipeline.load(TINY);
  });
  afterAll(async () => {
    await pipe?.dispose();
  });

  it('without returnFloat a video has frames and no float video; with it, the frames are Video.fromFloat of the float video', async () => {
    const plain = await pipe.generate(SMALL);
    expect(plain.float).toBeUndefined();
    expect(plain.frames.length).toBe(5 * 32 * 48 * 3);
    const withFloat = await pipe.generate({ ...SMALL, returnFloat: true });
    expect(withFloat.float?.shape).toEqual([1, 3, 5, 32, 48]);
    expectSameBytes(withFloat.frames, Video.fromFloat(withFloat.float!, 16).frames);
    expectSameBytes(plain.frames, withFloat.frames);
  });

  it('a batch: each video is its own view of the frames, equal to its float video converted in JS', async () => {
    const videos = await pipe.generateBatch({ ...SMALL, numVideosPerPrompt: 2, returnFloat: true });
    expect(videos).toHaveLength(2);
    for (const v of videos) {
      expect([v.numFrames, v.height, v.width]).toEqual([5, 32, 48]);
      expectSameBytes(v.frames, Video.fromFloat(v.float!, 16).frames);
    }
    expect(Buffer.from(videos[0].frames).equals(Buffer.from(videos[1].frames))).toBe(false);
    const decoded = await pipe.decode(videos[1].latents!);
    expect(decoded[0].float).toBeUndefined();
    expectSameBytes(decoded[0].frames, videos[1].frames);
  });

  it("output: 'latents' has no frames", async () => {
    const v = await pipe.generate({ ...SMALL, output: 'latents', returnFloat: true });
    expect([v.numFrames, v.frames.length, v.float]).toEqual([0, 0, undefined]);
    expect(v.latents?.shape).toEqual([1, 16, 2, 4, 6]);
  });
});
