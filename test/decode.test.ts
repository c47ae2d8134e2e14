// WanPipeline.decode(): the decode step on its own, and no lost work when a generation fails after
// its denoising loop: the error carries the final latents, and decode() finishes the same video.
import path from 'node:path';
import { fileURLToPath } from 'node:url';

import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { WanPipeline } from '../lib/pipeline.js';
import type { GenerateOptions, ProgressEvent } from '../lib/types.js';
import type { WanError } from '../lib/errors.js';

const TINY = path.join(path.dirname(fileURLToPath(import.meta.url)), '..', 'models', 'tiny');
const SMALL: GenerateOptions = { prompt: 'a red fox in the snow', width: 160, height: 96, numFrames: 9, steps: 3, seed: 11 };
// 41 frames: 11 latent frames, each decoded on its own (~0.15 s here), so an abort sent at the first
// decode event lands well before the decode ends.
const LONG: GenerateOptions = { ...SMALL, numFrames: 41 };

const rejection = (p: Promise<unknown>) => p.then(() => { throw new Error('expected a rejection'); }, (e) => e as WanError);

describe('WanPipeline.decode', () => {
  let pipe: WanPipeline;
  beforeAll(async () => {
    pipe = await WanPipeline.load(TINY);
  });
  afterAll(async () => {
    await pipe.dispose();
  });

  it("decodes output: 'latents' to the frames generate() gives, with decode events", async () => {
    const video = await pipe.generate(SMALL);
    const latentsOnly = await pipe.generate({ ...SMALL, output: 'latents' });
    expect(latentsOnly.numFrames).toBe(0);
    const events: ProgressEvent[] = [];
    const decoded = await pipe.decode(latentsOnly.latents!, { returnFloat: true, fps: 24, onProgress: (e) => events.push(e) });
    expect(decoded).toHaveLength(1);
    const [d] = decoded;
    expect([d.width, d.height, d.numFrames, d.fps]).toEqual([160, 96, 9, 24]);
    expect(Buffer.from(d.frames).equals(Buffer.from(video.frames))).toBe(true);
    expect(d.latents?.shape).toEqual([1, 16, 3, 12, 20]);
    expect(d.float?.shape).toEqual([1, 3, 9, 96, 160]);
    expect(events.filter((e) => e.stage === 'decode').map((e) => e.step)).toEqual([1, 2, 3]);
    expect(events.at(-1)?.stage).toBe('done');
  });

  it('an abort during the decode keeps the denoised latents on the error, and decode() finishes the same video', async () => {
    const reference = await pipe.generate(LONG);
    const controller = new AbortController();
    const err = await rejection(
      pipe.generate({ ...LONG, signal: controller.signal, onProgress: (e) => e.stage === 'decode' && controller.abort() }),
    );
    expect(err.code).toBe('ERR_WAN_ABORTED');
    expect(err.latents?.shape).toEqual([1, 16, 11, 12, 20]);
    expect(err.message).toContain('pipeline.decode(error.latents');
    expect(Buffer.from(err.latents!.data.buffer).equals(Buffer.from(reference.latents!.data.buffer))).toBe(true);
    const [finished] = await pipe.decode(err.latents!);
    expect(Buffer.from(finished.frames).equals(Buffer.from(reference.frames))).toBe(true);
  });

  it('an abort before the denoising ends carries no latents', async () => {
    const controller = new AbortController();
    const err = await rejection(
      pipe.generate({ ...SMALL, steps: 20, signal: controller.signal, onProgress: (e) => e.stage === 'denoise' && e.step === 2 && controller.abort() }),
    );
    expect(err.code).toBe('ERR_WAN_ABORTED');
    expect(err.latents).toBeUndefined();
    expect(err.message).not.toContain('error.latents');
  });

  it('an aborted decode() hands its latents back', async () => {
    const latents = (await pipe.generate({ ...LONG, output: 'latents' })).latents!;
    const controller = new AbortController();
    const err = await rejection(pipe.decode(latents, { signal: controller.signal, onProgress: (e) => e.stage === 'decode' && controller.abort() }));
    expect(err.code).toBe('ERR_WAN_ABORTED');
    expect(err.latents?.shape).toEqual(latents.shape);
  });

  it('refuses bad latents and options with ERR_WAN_BAD_ARGUMENT, and stays usable', async () => {
    const latents = (await pipe.generate({ ...SMALL, output: 'latents' })).latents!;
    const cases: Array<[unknown, unknown, RegExp]> = [
      [undefined, {}, /option 'latents' must be a float32 tensor/],
      [{ dtype: 'float32', shape: [1, 16, 3, 12], data: new Float32Array(576) }, {}, /option 'latents' must be a float32 tensor .* 5 dimensions/],
      [{ dtype: 'float32', shape: [1, 4, 3, 12, 20], data: new Float32Array(2880) }, {}, /latents must be a floating tensor \[B, 16, F', H', W'\].*got float \[1, 4, 3, 12, 20\]/i],
      [{ dtype: 'float32', shape: [0, 16, 3, 12, 20], data: new Float32Array(0) }, {}, /1 <= B <= 64/],
      [latents, { tiled: 'yes' }, /option 'tiled' is "yes"/],
      [latents, { fps: 0 }, /option 'fps' is 0/],
      [latents, { steps: 3 }, /steps/],
    ];
    for (const [input, options, message] of cases) {
      const err = await rejection(pipe.decode(input as never, options as never));
      expect(err.code, String(message)).toBe('ERR_WAN_BAD_ARGUMENT');
      expect(err.message).toMatch(message);
    }
    const aborted = await rejection(pipe.decode(latents, { signal: AbortSignal.abort() }));
    expect(aborted.code).toBe('ERR_WAN_ABORTED');
    expect((await pipe.decode(latents))[0].numFrames).toBe(9);
  });

  it('after dispose() is ERR_WAN_DISPOSED', async () => {
    const other = await WanPipeline.load(TINY);
    const latents = (await other.generate({ ...SMALL, output: 'latents' })).latents!;
    await other.dispose();
    expect((await rejection(other.decode(latents))).code).toBe('ERR_WAN_DISPOSED');
  });
});
