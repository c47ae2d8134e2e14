// The public API on the bundled tiny model (real tokenizer, random weights): progress, abort,
// queueing, dispose, option validation, determinism and memory across many generations.
import { rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { WanPipeline } from '../lib/pipeline.js';
import { runtimeInfo } from '../lib/runtime.js';
import type { GenerateOptions, ProgressEvent } from '../lib/types.js';
import { FIXTURES } from './helpers/fixtures.js';

const TINY = path.join(path.dirname(fileURLToPath(import.meta.url)), '..', 'models', 'tiny');
const SMALL: GenerateOptions = { prompt: 'a red fox in the snow', width: 48, height: 32, numFrames: 5, steps: 3, seed: 7 };

async function rejection(p: Promise<unknown>): Promise<any> {
  try {
    await p;
  } catch (err) {
    return err;
  }
  throw new Error('expected a rejection');
}

describe('WanPipeline on the bundled tiny model', () => {
  let pipe: WanPipeline;
  beforeAll(async () => {
    pipe = await WanPipeline.load(TINY);
  });
  afterAll(async () => {
    await pipe?.dispose();
  });

  it('reports the family and generates frames of the requested size', async () => {
    expect(pipe.family).toBe('t2v-a14b');
    const video = await pipe.generate(SMALL);
    expect([video.width, video.height, video.numFrames, video.fps]).toEqual([48, 32, 5, 16]);
    expect(video.frames.length).toBe(5 * 32 * 48 * 3);
    expect(video.latents?.shape).toEqual([1, 16, 2, 4, 6]);
    expect(video.settings).toMatchObject({ width: 48, height: 32, numFrames: 5, steps: 3, seed: 7, guidanceScale: 4, guidanceScale2: 3 });
    // The attention kernel the DiT ran: libtorch 1.x has no SDPA (our exact fallback); 2.x names its backend.
    const major = Number(runtimeInfo().libtorchVersion.split('.')[0]);
    if (major < 2) expect(video.settings?.attentionBackend).toBe('chunked_fallback');
    else expect(['flash_attention', 'efficient_attention', 'cudnn_attention', 'math']).toContain(video.settings?.attentionBackend);
  });

  it('emits progress in order: encode-text, denoise 1..N with expert and timestep, decode, done', async () => {
    const events: ProgressEvent[] = [];
    const listener = (e: ProgressEvent) => events.push(e);
    pipe.on('progress', listener);
    const viaOption: ProgressEvent[] = [];
    await pipe.generate({ ...SMALL, steps: 4, onProgress: (e) => viaOption.push(e) });
    pipe.off('progress', listener);
    expect(viaOption).toEqual(events);
    const stages = events.map((e) => e.stage).filter((s, i, a) => s !== a[i - 1]);
    expect(stages).toEqual(['encode-text', 'denoise', 'decode', 'done']);
    const denoise = events.filter((e) => e.stage === 'denoise');
    expect(denoise.map((e) => e.step)).toEqual([1, 2, 3, 4]);
    expect(denoise.every((e) => e.totalSteps === 4)).toBe(true);
    // shift 12 keeps the first steps above the 875 boundary: high-noise first, low-noise last.
    expect(denoise[0].expert).toBe('high-noise');
    expect(denoise[3].expert).toBe('low-noise');
    for (let i = 1; i < denoise.length; i++) expect(denoise[i].timestep!).toBeLessThan(denoise[i - 1].timestep!);
    expect(denoise[3].etaMs).toBe(0);
  });

  it('gives identical frames for the same seed, different ones for another seed', async () => {
    const a = await pipe.generate(SMALL);
    const b = await pipe.generate(SMALL);
    const c = await pipe.generate({ ...SMALL, seed: 8 });
    expect(Buffer.from(a.frames).equals(Buffer.from(b.frames))).toBe(true);
    expect(Buffer.from(a.frames).equals(Buffer.from(c.frames))).toBe(false);
  });

  it('aborts mid-denoise with ERR_WAN_ABORTED and stays usable', async () => {
    const controller = new AbortController();
    const steps: number[] = [];
    const err = await rejection(
      pipe.generate({
        ...SMALL,
        steps: 50,
        signal: controller.signal,
        onProgress: (e) => {
          if (e.stage === 'denoise') {
            steps.push(e.step);
            if (e.step === 2) controller.abort();
          }
        },
      }),
    );
    expect(err.code).toBe('ERR_WAN_ABORTED');
    expect(Math.max(...steps)).toBeLessThan(50);
    const video = await pipe.generate(SMALL);
    expect(video.numFrames).toBe(5);
  });

  it('rejects at once when the signal is already aborted', async () => {
    const err = await rejection(pipe.generate({ ...SMALL, signal: AbortSignal.abort() }));
    expect(err.code).toBe('ERR_WAN_ABORTED');
  });

  it('a queued call that is aborted, or has bad options, rejects at once, without waiting for the call ahead', async () => {
    let firstDone = false;
    const first = pipe.generate({ ...SMALL, steps: 30 }).then(() => (firstDone = true));
    const controller = new AbortController();
    const aborted = rejection(pipe.generate({ ...SMALL, signal: controller.signal }));
    const bad = rejection(pipe.generate({ ...SMALL, steps: -1 }));
    const already = rejection(pipe.generate({ ...SMALL, signal: AbortSignal.abort() }));
    controller.abort();
    const errors = await Promise.all([aborted, bad, already]);
    expect(errors.map((e) => e.code)).toEqual(['ERR_WAN_ABORTED', 'ERR_WAN_BAD_ARGUMENT', 'ERR_WAN_ABORTED']);
    expect(firstDone).toBe(false); // all three settled while the first still ran
    await first;
    expect(firstDone).toBe(true);
  });

  it('a progress listener that throws stops the call with ERR_WAN_ABORTED caused by its error; the pipeline stays usable', async () => {
    const boom = new Error('listener bug');
    const thrower = (e: ProgressEvent) => {
      if (e.stage === 'denoise' && e.step === 2) throw boom;
    };
    const seen: number[] = [];
    const err = await rejection(pipe.generate({ ...SMALL, steps: 30, onProgress: (e) => {
      if (e.stage === 'denoise') seen.push(e.step);
      thrower(e);
    } }));
    expect(err.code).toBe('ERR_WAN_ABORTED');
    expect(err.cause).toBe(boom);
    expect(err.message).toContain('a progress listener threw, so the call was stopped: listener bug');
    expect(Math.max(...seen)).toBeLessThan(30); // stopped, not run to the end
    // A 'progress' listener on the pipeline, throwing at the last event: the finished work is kept.
    const onDone = (e: ProgressEvent) => {
      if (e.stage === 'done') throw boom;
    };
    pipe.on('progress', onDone);
    try {
      const late = await rejection(pipe.generate(SMALL));
      expect(late.code).toBe('ERR_WAN_ABORTED');
      expect(late.latents?.shape).toEqual([1, 16, 2, 4, 6]);
      expect(late.message).toContain('error.latents');
    } finally {
      pipe.off('progress', onDone);
    }
    expect((await pipe.generate(SMALL)).numFrames).toBe(5);
  });

  it('cleans a prompt once, as the reference does (two HTML unescapes, whitespace collapsed), not twice', async () => {
    const latents = async (prompt: string) => (await pipe.generate({ ...SMALL, prompt, steps: 1, output: 'latents' })).latents!.data;
    // Cleaned once: '&lt;x' (text), which the tokenizer does not read as '<x'; cleaned twice it would be '<x'.
    const once = await latents('a &amp;amp;lt;x cat');
    expect(await latents('  a   &amp;amp;lt;x\n cat ')).toEqual(once);
    expect(await latents('a <x cat')).not.toEqual(once);
  });

  it('runs concurrent calls one after another in call order', async () => {
    const order: string[] = [];
    const first = pipe.generate({ ...SMALL, seed: 1 }).then((v) => (order.push('first'), v));
    const second = pipe.generate({ ...SMALL, seed: 2 }).then((v) => (order.push('second'), v));
    const [a, b] = await Promise.all([first, second]);
    expect(order).toEqual(['first', 'second']);
    expect(a.settings?.seed).toBe(1);
    expect(b.settings?.seed).toBe(2);
  });

  it('generateBatch returns one video per prompt x numVideosPerPrompt; the same prompt reuses its embeddings', async () => {
    const videos = await pipe.generateBatch({ ...SMALL, prompt: ['a cat', 'a dog'], numVideosPerPrompt: 2 });
    expect(videos).toHaveLength(4);
    const err = await rejection(pipe.generate({ ...SMALL, prompt: ['a cat', 'a dog'] }));
    expect(err.code).toBe('ERR_WAN_BAD_ARGUMENT');
    // generate() refuses several videos before generating any of them.
    const events: ProgressEvent[] = [];
    const many = await rejection(pipe.generate({ ...SMALL, numVideosPerPrompt: 2, onProgress: (e) => events.push(e) }));
    expect(many.message).toContain("'numVideosPerPrompt'");
    expect(many.message).toContain('generateBatch()');
    expect(events).toEqual([]);
    pipe.info(); // still usable
    // The text encoder runs once per new prompt: the prompt and the negative one the first time, then
    // nothing for the same prompt, then only the new prompt (the negative one is still cached).
    const encoded = () => pipe.info().encodedPrompts;
    const once = { ...SMALL, negativePrompt: 'blurry, cache test' };
    let start = encoded();
    const cachedBefore = pipe.info().cachedPrompts;
    await pipe.generate({ ...once, prompt: 'a cat, cache test' });
    expect(encoded() - start).toBe(2);
    await pipe.generate({ ...once, prompt: 'a cat, cache test', seed: 5 });
    expect(encoded() - start).toBe(2);
    await pipe.generate({ ...once, prompt: 'a bird, cache test' });
    expect(encoded() - start).toBe(3);
    expect(pipe.info().cachedPrompts).toBe(Math.min(4, cachedBefore + 3)); // 3 new entries; it holds at most 4
    // The same batch again encodes nothing either.
    await pipe.generateBatch({ ...once, prompt: ['a cat', 'a dog'] });
    start = encoded();
    await pipe.generateBatch({ ...once, prompt: ['a cat', 'a dog'] });
    expect(encoded() - start).toBe(0);
  });

  it('one call makes at most 64 videos (one batch), refused before the text encoder runs', async () => {
    const events: ProgressEvent[] = [];
    const prompts = Array.from({ length: 33 }, (_, i) => `prompt ${i}`);
    const err = await rejection(pipe.generateBatch({ ...SMALL, prompt: prompts, numVideosPerPrompt: 2, onProgress: (e) => events.push(e) }));
    expect(err.code).toBe('ERR_WAN_BAD_ARGUMENT');
    expect(err.message).toContain('33 prompts x 2 videos per prompt; one call generates at most 64 videos');
    expect(events.filter((e) => e.stage !== 'warning')).toEqual([]);
    expect((await pipe.generate(SMALL)).numFrames).toBe(5); // still usable
  });

  it('output latents stops before decoding; guidance 1 needs no negative prompt', async () => {
    const warnings: string[] = [];
    const onProgress = (e: ProgressEvent) => e.stage === 'warning' && warnings.push(e.message ?? '');
    const v = await pipe.generate({ ...SMALL, output: 'latents', guidanceScale: 1, guidanceScale2: 1, onProgress });
    expect(warnings).toEqual([]);
    // guidanceScale alone switches CFG, as in diffusers: a low-noise scale alone is unused, and said so.
    const off = await pipe.generate({ ...SMALL, output: 'latents', guidanceScale: 1, guidanceScale2: 3, onProgress });
    expect(warnings).toHaveLength(1);
    expect(warnings[0]).toContain('guidanceScale2 3 is not used');
    expect(off.latents?.data).toEqual(v.latents?.data);
    expect(v.numFrames).toBe(0);
    expect(v.latents?.shape).toEqual([1, 16, 2, 4, 6]);
    expect((await rejection(v.save('/tmp/never.mp4'))).code).toBe('ERR_WAN_BAD_ARGUMENT');
  });

  it('rounds frames and sizes like the reference, with a warning event', async () => {
    const warnings: string[] = [];
    const v = await pipe.generate({ ...SMALL, width: 50, height: 40, numFrames: 7, onProgress: (e) => e.stage === 'warning' && warnings.push(e.message!) });
    expect([v.width, v.height, v.numFrames]).toEqual([48, 32, 5]);
    expect(warnings).toHaveLength(2);
  });

  const invalid: Array<[string, Record<string, unknown>]> = [
    ['steps', { steps: 0 }],
    ['steps', { steps: 2.5 }],
    ['guidanceScale', { guidanceScale: -1 }],
    ['guidanceScale', { guidanceScale: Number.NaN }],
    ['shift', { shift: 0 }],
    ['sampler', { sampler: 'ddim' }],
    ['seed', { seed: -1 }],
    ['numFrames', { numFrames: 0 }],
    ['width', { width: 8 }],
    ['height', { height: 'tall' }],
    ['numVideosPerPrompt', { numVideosPerPrompt: 0 }],
    ['output', { output: 'png' }],
    ['tiled', { tiled: 'yes' }],
    ['prompt', { prompt: 42 }],
    ['prompt', { prompt: [] }],
    ['image', { image: 'cat.png' }],
    ['promptEmbeds', { prompt: undefined, promptEmbeds: { dtype: 'float32', shape: [1, 2], data: new Float32Array(2) } }],
    ['colour', { colour: 'red' }],
    ['returnFloat', { returnFloat: 'yes' }],
    // Unused without CFG, but still a caller's mistake.
    ['negativePrompt', { guidanceScale: 1, negativePrompt: 42 }],
    ['negativePromptEmbeds', { guidanceScale: 1, negativePromptEmbeds: 'junk' }],
  ];
  for (const [name, bad] of invalid) {
    it(`rejects invalid option '${name}' = ${JSON.stringify(Object.values(bad)[0])} naming it`, async () => {
      const err = await rejection(pipe.generate({ ...SMALL, ...(bad as GenerateOptions) }));
      expect(err.code).toBe('ERR_WAN_BAD_ARGUMENT');
      expect(err.message).toContain(`'${name}'`);
    });
  }

  it('a request too large for memory is ERR_WAN_OOM saying what it needs, and the pipeline stays usable', async () => {
    // 8192x8192x4001 frames: the initial noise alone would be ~67 GB.
    const err = await rejection(pipe.generate({ ...SMALL, width: 8192, height: 8192, numFrames: 4001 }));
    expect(err.code).toBe('ERR_WAN_OOM');
    expect(err.message).toMatch(/needs about [0-9.]+ [KMGT]i?B of host memory; use a smaller size or fewer frames/);
    // Several videos in one call: the estimate counts each, and the advice names fewer videos.
    const batch = await rejection(pipe.generateBatch({ ...SMALL, width: 8192, height: 8192, numFrames: 4001, numVideosPerPrompt: 2 }));
    expect(batch.code).toBe('ERR_WAN_OOM');
    expect(batch.message).toMatch(/needs about [0-9.]+ [KMGT]i?B of host memory; use fewer videos per call, a smaller size or fewer frames/);
    const need = (m: string) => Number(/needs about ([0-9.]+) TiB/.exec(m)?.[1]);
    expect(need(batch.message)).toBeGreaterThan(1.9 * need(err.message));
    expect((await pipe.generate(SMALL)).numFrames).toBe(5);
  });

  it("a size beyond the DiT's rotary tables is ERR_WAN_BAD_ARGUMENT in the caller's terms", async () => {
    // 9997 frames: 2500 latent frames, past the tiny model's rope_max_seq_len of 1024 patches per axis.
    const err = await rejection(pipe.generate({ ...SMALL, numFrames: 9997 }));
    expect(err.code).toBe('ERR_WAN_BAD_ARGUMENT');
    expect(err.message).toContain("option 'numFrames' is 9997: 2500 patches along it, more than the model's rope_max_seq_len 1024");
  });

  it('keeps memory flat across 20 consecutive generations', async () => {
    await pipe.generate(SMALL);
    if (global.gc) global.gc();
    const start = process.memoryUsage().rss;
    for (let i = 0; i < 20; i++) await pipe.generate({ ...SMALL, seed: i });
    if (global.gc) global.gc();
    const grown = process.memoryUsage().rss - start;
    // Generous bound: one tiny generation allocates well under 1 MB of tensors; a leak of every
    // step's activations or of each result would exceed this.
    expect(grown).toBeLessThan(64 * 1024 * 1024);
  });

  it('BigInt, NaN and Infinity options are ERR_WAN_BAD_ARGUMENT showing the value as passed', async () => {
    // JSON.stringify threw on a BigInt and printed NaN / Infinity as "null".
    const cases: Array<[string, unknown, string]> = [
      ['width', 48n, "option 'width' is 48n (a BigInt)"],
      ['seed', 5n, "option 'seed' is 5n (a BigInt)"],
      ['width', Number.NaN, "option 'width' is NaN;"],
      ['guidanceScale', Number.POSITIVE_INFINITY, "option 'guidanceScale' is Infinity;"],
      ['tiled', () => true, "option 'tiled' is a function;"],
      ['sampler', Symbol('x'), "option 'sampler' is Symbol(x);"],
    ];
    for (const [name, value, message] of cases) {
      const err = await rejection(pipe.generate({ ...SMALL, [name]: value } as GenerateOptions));
      expect([name, err.code, err.message]).toEqual([name, 'ERR_WAN_BAD_ARGUMENT', expect.stringContaining(message)]);
    }
  });

  it('a prompt array with a hole or a non-string entry is ERR_WAN_BAD_ARGUMENT naming the entry', async () => {
    // eslint-disable-next-line no-sparse-arrays
    const sparse = await rejection(pipe.generateBatch({ ...SMALL, prompt: [, 'a'] as string[] }));
    expect(sparse.code).toBe('ERR_WAN_BAD_ARGUMENT');
    expect(sparse.message).toContain("option 'prompt' entry 0 is missing");
    const number = await rejection(pipe.generateBatch({ ...SMALL, prompt: ['a', 5] as unknown as string[] }));
    expect(number.message).toContain("option 'prompt' entry 1 is 5");
    // eslint-disable-next-line no-sparse-arrays
    const negative = await rejection(pipe.generate({ ...SMALL, negativePrompt: [, 'b'] as string[] }));
    expect(negative.message).toContain("option 'negativePrompt' entry 0 is missing");
  });

  it('promptEmbeds and latents over a SharedArrayBuffer give the same video as ordinary arrays', async () => {
    const shared = (a: Float32Array) => {
      const out = new Float32Array(new SharedArrayBuffer(a.byteLength));
      out.set(a);
      return out;
    };
    const embeds = new Float32Array(512 * 32).map((_, i) => Math.sin(i) * 0.1);
    const base = { ...SMALL, prompt: undefined, guidanceScale: 1, guidanceScale2: 1 };
    const latents = (await pipe.generate({ ...SMALL, output: 'latents' })).latents!;
    const plain = await pipe.generate({ ...base, promptEmbeds: { dtype: 'float32', shape: [1, 512, 32], data: embeds }, latents });
    const fromShared = await pipe.generate({
      ...base,
      promptEmbeds: { dtype: 'float32', shape: [1, 512, 32], data: shared(embeds) },
      latents: { ...latents, data: shared(latents.data as Float32Array) },
    });
    expect(Buffer.from(fromShared.frames).equals(Buffer.from(plain.frames))).toBe(true);
  });

  it('a tensor whose data length does not match its shape is ERR_WAN_BAD_ARGUMENT naming it', async () => {
    const base = { ...SMALL, prompt: undefined, guidanceScale: 1, guidanceScale2: 1 };
    const err = await rejection(pipe.generate({ ...base, promptEmbeds: { dtype: 'float32', shape: [1, 512, 32], data: new Float32Array(100) } }));
    expect(err.code).toBe('ERR_WAN_BAD_ARGUMENT');
    expect(err.message).toContain("option 'promptEmbeds' has 100 values but its shape [1,512,32] needs 16384");
    const latents = await rejection(pipe.generate({ ...SMALL, latents: { dtype: 'float32', shape: [1, 16, 2, 4, 1.5], data: new Float32Array(192) } }));
    expect([latents.code, latents.message]).toEqual(['ERR_WAN_BAD_ARGUMENT', expect.stringContaining("option 'latents' has shape [1,16,2,4,1.5]")]);
  });
});

describe('WanPipeline.load', () => {
  it('rejects unknown and invalid load options naming them', async () => {
    expect((await rejection(WanPipeline.load(TINY, { device: 'tpu' as any }))).message).toContain("'device'");
    expect((await rejection(WanPipeline.load(TINY, { dtype: 'int8' as any }))).code).toBe('ERR_WAN_BAD_ARGUMENT');
    expect((await rejection(WanPipeline.load(TINY, { offload: 'disk' as any }))).message).toContain("'offload'");
    expect((await rejection(WanPipeline.load(TINY, { speed: 'max' } as any))).message).toContain("'speed'");
  });

  it('asks for CUDA on this CPU build with ERR_WAN_NO_CUDA', async (ctx) => {
    // A CUDA build with a GPU loads instead: there this check does not apply (a reported skip).
    if (runtimeInfo().cudaAvailable) ctx.skip('this build has a CUDA device');
    const err = await rejection(WanPipeline.load(TINY, { device: 'cuda' }));
    expect(err.code).toBe('ERR_WAN_NO_CUDA');
  });

  it('a folder that is not a model is ERR_WAN_BAD_CHECKPOINT', async () => {
    const err = await rejection(WanPipeline.load(path.join(FIXTURES, 'global')));
    expect(err.code).toBe('ERR_WAN_BAD_CHECKPOINT');
    expect(err.message).toContain('model_index.json');
  });

  it('a model without tokenizer/ asks for promptEmbeds, and takes them', async () => {
    const pipe = await WanPipeline.load(path.join(FIXTURES, 'ti2v-5b-tiny'));
    try {
      const err = await rejection(pipe.generate({ ...SMALL, width: 64, height: 64 }));
      expect(err.code).toBe('ERR_WAN_BAD_CHECKPOINT');
      expect(err.message).toContain('promptEmbeds');
      const embeds = { dtype: 'float32' as const, shape: [1, 512, 32], data: new Float32Array(512 * 32).fill(0.1) };
      const v = await pipe.generate({ width: 64, height: 64, numFrames: 5, steps: 2, seed: 1, promptEmbeds: embeds, negativePromptEmbeds: { ...embeds, data: new Float32Array(512 * 32) } });
      expect([v.width, v.height, v.numFrames, v.fps]).toEqual([64, 64, 5, 24]);
    } finally {
      await pipe.dispose();
    }
  });

  it('image to video takes a PNG Buffer, a file path or raw RGB, and sizes from the image aspect', async () => {
    const embeds = { dtype: 'float32' as const, shape: [1, 512, 32], data: new Float32Array(512 * 32).fill(0.1) };
    const base = { numFrames: 5, steps: 2, seed: 3, promptEmbeds: embeds, negativePromptEmbeds: { ...embeds, data: new Float32Array(512 * 32) } };
    const rgb = new Uint8Array(40 * 30 * 3).map((_, i) => (i * 7) % 256);
    const png = await sharp(Buffer.from(rgb), { raw: { width: 40, height: 30, channels: 3 } }).png().toBuffer();
    const file = path.join(os.tmpdir(), `wan-video-test-${process.pid}.png`);
    writeFileSync(file, png);
    const i2v = await WanPipeline.load(path.join(FIXTURES, 'i2v-a14b-tiny'));
    const ti2v = await WanPipeline.load(path.join(FIXTURES, 'ti2v-5b-tiny'));
    try {
      expect((await rejection(i2v.generate({ ...base, width: 32, height: 48 }))).message).toContain("'image'");
      const stages: string[] = [];
      const fromBuffer = await i2v.generate({ ...base, image: png, width: 32, height: 48, onProgress: (e) => stages.at(-1) !== e.stage && stages.push(e.stage) });
      // The image's VAE encode is a stage of its own, one the docs and the CLI know.
      expect(stages).toEqual(['encode-text', 'encode-image', 'denoise', 'decode', 'done']);
      const fromFile = await i2v.generate({ ...base, image: file, width: 32, height: 48 });
      const fromRaw = await i2v.generate({ ...base, image: { data: rgb, width: 40, height: 30 }, width: 32, height: 48 });
      expect([fromBuffer.width, fromBuffer.height, fromBuffer.numFrames]).toEqual([32, 48, 5]);
      expect(Buffer.from(fromFile.frames).equals(Buffer.from(fromBuffer.frames))).toBe(true);
      expect(Buffer.from(fromRaw.frames).equals(Buffer.from(fromBuffer.frames))).toBe(true);
      // No size given: the image's 4:3 aspect at the family's area, in multiples of 32 for TI2V-5B.
      const sized = await ti2v.generate({ ...base, image: png, steps: 1, output: 'latents' });
      expect(sized.settings).toMatchObject({ width: 1088, height: 800 });
      const ti2vVideo = await ti2v.generate({ ...base, image: png, width: 64, height: 64 });
      expect([ti2vVideo.width, ti2vVideo.height]).toEqual([64, 64]);
      expect((await rejection(ti2v.generate({ ...base, image: Buffer.from('not an image'), width: 64, height: 64 }))).code).toBe('ERR_WAN_BAD_ARGUMENT');
    } finally {
      rmSync(file, { force: true });
      await i2v.dispose();
      await ti2v.dispose();
    }
  });

  it('dispose frees the pipeline and later calls reject with ERR_WAN_DISPOSED', async () => {
    const pipe = await WanPipeline.load(TINY);
    const pending = pipe.generate(SMALL);
    await pipe.dispose(); // waits for the queued call
    expect((await pending).numFrames).toBe(5);
    expect((await rejection(pipe.generate(SMALL))).code).toBe('ERR_WAN_DISPOSED');
    expect(() => pipe.info()).toThrow(/disposed/);
  });

  it("vaeDtype 'float16' on the CPU loads only where libtorch has half-precision CPU convolutions", async () => {
    const result = await WanPipeline.load(TINY, { vaeDtype: 'float16' }).then((p) => p, (e) => e);
    if (runtimeInfo().libtorchVersion.startsWith('1.')) {
      // Debian's libtorch 1.13: refused at load, not at every decode.
      expect(result.code).toBe('ERR_WAN_BAD_ARGUMENT');
      expect(result.message).toContain("option 'vaeDtype' is 'float16', which this libtorch");
    } else {
      const pipe = result as WanPipeline;
      try {
        expect((await pipe.generate({ ...SMALL, steps: 1 })).numFrames).toBe(5);
      } finally {
        await pipe.dispose();
      }
    }
  });

  it('a model path containing a NUL character is ERR_WAN_BAD_ARGUMENT showing the whole path', async () => {
    const err = await rejection(WanPipeline.load('/tmp/\0x'));
    expect(err.code).toBe('ERR_WAN_BAD_ARGUMENT');
    expect(err.message).toContain("option 'dir' \"/tmp/\\u0000x\" contains a NUL character");
  });

  it('an image too elongated for the model area blames the image, and explicit width and height work', async () => {
    const ti2v = await WanPipeline.load(path.join(FIXTURES, 'ti2v-5b-tiny'));
    try {
      const embeds = { dtype: 'float32' as const, shape: [1, 512, 32], data: new Float32Array(512 * 32).fill(0.1) };
      const image = { data: new Uint8Array(1 * 5000 * 3).fill(128), width: 1, height: 5000 };
      const base = { numFrames: 5, steps: 1, seed: 1, guidanceScale: 1, promptEmbeds: embeds, image, output: 'latents' as const };
      const err = await rejection(ti2v.generate(base));
      expect(err.code).toBe('ERR_WAN_BAD_ARGUMENT');
      expect(err.message).toContain("option 'image' has aspect 1x5000");
      expect(err.message).toContain('beyond the 8192 limit; allowed: pass width and height explicitly');
      const sized = await ti2v.generate({ ...base, width: 32, height: 64 });
      expect(sized.settings).toMatchObject({ width: 32, height: 64 });
    } finally {
      await ti2v.dispose();
    }
  });
});
