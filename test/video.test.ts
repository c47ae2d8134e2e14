import { execFileSync } from 'node:child_process';
import { getEventListeners } from 'node:events';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, readdir, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';

import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { WanError } from '../lib/errors.js';
import { floatToUint8, framePath, type SaveOptions, Video, type VideoQuality } from '../lib/video.js';

let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(path.join(os.tmpdir(), 'wan-video-test-'));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

// Deterministic pseudo-random bytes (noise is slow to encode and has no structure to hide bugs).
function noise(n: number, seed = 1): Uint8Array {
  const out = new Uint8Array(n);
  let s = seed >>> 0;
  for (let i = 0; i < n; i++) {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    out[i] = s >>> 24;
  }
  return out;
}

function syntheticVideo(width: number, height: number, numFrames: number, fps: number): Video {
  const frames = new Uint8Array(numFrames * height * width * 3);
  for (let f = 0; f < numFrames; f++) {
    for (let y = 0; y < height; y++) {
      for (let x = 0; x < width; x++) {
        const i = ((f * height + y) * width + x) * 3;
        frames[i] = (x * 255) / Math.max(1, width - 1);
        frames[i + 1] = (y * 255) / Math.max(1, height - 1);
        frames[i + 2] = (f * 37) & 255;
      }
    }
  }
  return new Video({ width, height, fps, numFrames, frames });
}

function probe(file: string): { width: number; height: number; fps: string; frames: number; codec: string; pixFmt: string } {
  const out = execFileSync('ffprobe', [
    '-v', 'error', '-count_frames', '-select_streams', 'v:0',
    '-show_entries', 'stream=codec_name,width,height,r_frame_rate,nb_read_frames,pix_fmt', '-of', 'json', file,
  ]);
  const s = JSON.parse(out.toString()).streams[0];
  return { width: s.width, height: s.height, fps: s.r_frame_rate, frames: Number(s.nb_read_frames), codec: s.codec_name, pixFmt: s.pix_fmt };
}

function decodeRgb(file: string): Buffer {
  return execFileSync('ffmpeg', ['-v', 'error', '-i', file, '-f', 'rawvideo', '-pix_fmt', 'rgb24', '-'], { maxBuffer: 1 << 28 });
}

async function expectWanError(p: Promise<unknown>, code: string): Promise<WanError> {
  const err = await p.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(WanError);
  expect((err as WanError).code).toBe(code);
  return err as WanError;
}

describe('Video.fromFloat', () => {
  it('converts like diffusers: (x/2+0.5).clamp(0,1) in float32, *255, round half to even', () => {
    // Hand-checked with numpy float32: (np.clip(x/2+0.5,0,1)*255).round().astype(uint8).
    const cases: Array<[number, number]> = [
      [-1, 0], [1, 255], [-2, 0], [2, 255], [0, 128], // 127.5 -> 128 (truncation would give 127)
      [-0.5, 64], [0.5, 191], [0.3, 166], [-0.3, 89],
      [0.16470590233802795, 148], // float32 product is exactly 148.5 -> even 148 (float64 math gives 149)
      [0.737254798412323, 222], // float32 product 221.5 -> 222 (float64 math gives 221)
      [0.5333333015441895, 196], // float32 195.5 -> 196
      [Number.NaN, 0],
    ];
    for (const [x, expected] of cases) expect([x, floatToUint8(x)]).toEqual([x, expected]);
  });

  it('reorders [3, F, H, W] planes into F x H x W x RGB and keeps size and fps', () => {
    const [F, H, W] = [2, 2, 3];
    const data = new Float32Array(3 * F * H * W);
    // channel c at (f, y, x) = a value whose uint8 encodes c, f, y, x
    const value = (c: number, f: number, y: number, x: number) => ((c * 64 + f * 16 + y * 4 + x) / 255) * 2 - 1;
    for (let c = 0; c < 3; c++)
      for (let f = 0; f < F; f++)
        for (let y = 0; y < H; y++) for (let x = 0; x < W; x++) data[((c * F + f) * H + y) * W + x] = value(c, f, y, x);
    const v = Video.fromFloat({ dtype: 'float32', shape: [1, 3, F, H, W], data }, 16);
    expect([v.numFrames, v.height, v.width, v.fps]).toEqual([F, H, W, 16]);
    for (let f = 0; f < F; f++)
      for (let y = 0; y < H; y++)
        for (let x = 0; x < W; x++)
          for (let c = 0; c < 3; c++) expect(v.frames[((f * H + y) * W + x) * 3 + c]).toBe(c * 64 + f * 16 + y * 4 + x);
    expect(Array.from(v.frame(1).subarray(0, 3))).toEqual([16, 80, 144]);
  });

  it('rejects a batch, a wrong layout and wrong frame bytes', () => {
    expect(() => Video.fromFloat({ dtype: 'float32', shape: [2, 3, 1, 2, 2], data: new Float32Array(48) }, 16)).toThrow(/one \[3, F, H, W\]/);
    expect(() => Video.fromFloat({ dtype: 'float32', shape: [4, 1, 2, 2], data: new Float32Array(16) }, 16)).toThrow(/\[3, F, H, W\]/);
    expect(() => new Video({ width: 2, height: 2, fps: 16, numFrames: 2, frames: new Uint8Array(23) })).toThrow(/frames/);
    expect(() => syntheticVideo(4, 4, 2, 16).frame(2)).toThrow(/index/);
  });
});

describe('Video.fromFrames', () => {
  // uint8 [B, F, H, W, 3]: two videos of 2 frames of 1x2 pixels, byte i = i.
  const frames = { dtype: 'uint8' as const, shape: [2, 2, 1, 2, 3], data: Uint8Array.from({ length: 24 }, (_, i) => i) };

  it('takes video `index` of the batch as a view of the same bytes', () => {
    const second = Video.fromFrames(frames, 24, 1);
    expect([second.width, second.height, second.numFrames, second.fps]).toEqual([2, 1, 2, 24]);
    expect(Array.from(second.frames)).toEqual(Array.from({ length: 12 }, (_, i) => 12 + i));
    expect(second.frames.buffer).toBe(frames.data.buffer);
    expect(Array.from(Video.fromFrames(frames, 24).frame(1))).toEqual([6, 7, 8, 9, 10, 11]);
  });

  it('rejects float data, a layout other than [B, F, H, W, 3] and an index outside the batch', () => {
    const bad = (f: unknown, index?: number) => () => Video.fromFrames(f as never, 24, index);
    expect(bad({ dtype: 'float32', shape: [2, 2, 1, 2, 3], data: new Float32Array(24) })).toThrow(/must be uint8 \[B, F, H, W, 3\] RGB, got float32/);
    expect(bad({ ...frames, shape: [2, 2, 2, 3] })).toThrow(/\[B, F, H, W, 3\]/);
    expect(bad({ ...frames, shape: [2, 2, 1, 3, 2] })).toThrow(/\[B, F, H, W, 3\]/);
    expect(bad(frames, 2)).toThrow(/index.*\[0, 1\]/);
    expect(bad(frames, -1)).toThrow(WanError);
  });
});

describe('Video.save', () => {
  it('.mp4 is H.264 yuv420p with the right frame count, size and fps, moov first (+faststart)', async () => {
    const file = path.join(dir, 'a.mp4');
    await syntheticVideo(64, 48, 17, 16).save(file);
    expect(probe(file)).toEqual({ width: 64, height: 48, fps: '16/1', frames: 17, codec: 'h264', pixFmt: 'yuv420p' });
    const bytes = execFileSync('cat', [file]);
    expect(bytes.indexOf('moov')).toBeLessThan(bytes.indexOf('mdat'));
  });

  it('.webm is VP9 with the right frame count, size and fps', async () => {
    const file = path.join(dir, 'a.webm');
    await syntheticVideo(64, 48, 9, 24).save(file, { quality: 'high' });
    expect(probe(file)).toEqual({ width: 64, height: 48, fps: '24/1', frames: 9, codec: 'vp9', pixFmt: 'yuv420p' });
  });

  it('odd sizes are padded to even for 4:2:0', async () => {
    const file = path.join(dir, 'odd.mp4');
    await syntheticVideo(33, 17, 5, 16).save(file);
    expect(probe(file)).toMatchObject({ width: 34, height: 18, frames: 5 });
  });

  it('decodes back to the input colors (BT.709 conversion tagged correctly)', async () => {
    const [W, H, F] = [64, 32, 3];
    const colors = [[200, 50, 100], [20, 220, 60], [30, 40, 230], [250, 250, 10]];
    const frames = new Uint8Array(F * H * W * 3);
    for (let i = 0; i < F * H * W; i++) frames.set(colors[Math.floor((i % W) / 16)], i * 3);
    for (const ext of ['mp4', 'webm']) {
      const file = path.join(dir, `colors.${ext}`);
      await new Video({ width: W, height: H, fps: 16, numFrames: F, frames }).save(file, { crf: 0 });
      const rgb = decodeRgb(file);
      expect(rgb.length).toBe(frames.length);
      let maxDiff = 0;
      for (let i = 0; i < rgb.length; i++) {
        const x = Math.floor(i / 3) % W;
        if (x % 16 < 3 || x % 16 > 12) continue; // chroma subsampling blurs the block edges
        maxDiff = Math.max(maxDiff, Math.abs(rgb[i] - frames[i]));
      }
      expect([ext, maxDiff <= 3]).toEqual([ext, true]);
    }
  });

  it('.gif opens with the right frame count and size', async () => {
    const file = path.join(dir, 'a.gif');
    await syntheticVideo(40, 30, 7, 16).save(file);
    expect(probe(file)).toMatchObject({ width: 40, height: 30, frames: 7, codec: 'gif' });
  });

  it('a PNG sequence round-trips the frames exactly (numbered from 0, folders created)', async () => {
    const v = new Video({ width: 13, height: 7, fps: 16, numFrames: 5, frames: noise(5 * 7 * 13 * 3) });
    const pattern = path.join(dir, 'png', 'nested', 'frame-%04d.png');
    await v.save(pattern);
    expect((await readdir(path.dirname(pattern))).sort()).toEqual(['frame-0000.png', 'frame-0001.png', 'frame-0002.png', 'frame-0003.png', 'frame-0004.png']);
    for (let i = 0; i < v.numFrames; i++) {
      const { data, info } = await sharp(framePath(pattern, i)).raw().toBuffer({ resolveWithObject: true });
      expect([info.width, info.height, info.channels]).toEqual([13, 7, 3]);
      expect(Buffer.compare(data, Buffer.from(v.frame(i)))).toBe(0);
    }
  });

  it('toBuffer gives the encoded bytes', async () => {
    const mp4 = await syntheticVideo(32, 32, 3, 16).toBuffer('mp4');
    expect(mp4.subarray(4, 8).toString()).toBe('ftyp');
    const gif = await syntheticVideo(32, 32, 3, 16).toBuffer('gif');
    expect(gif.subarray(0, 6).toString()).toBe('GIF89a');
  });

  it('rejects unknown extensions, a single .png and a bad crf', async () => {
    const v = syntheticVideo(8, 8, 1, 16);
    await expectWanError(v.save(path.join(dir, 'x.avi')), 'ERR_WAN_BAD_ARGUMENT');
    await expectWanError(v.save(path.join(dir, 'x.png')), 'ERR_WAN_BAD_ARGUMENT');
    const err = await expectWanError(v.save(path.join(dir, 'x.mp4'), { crf: 60 }), 'ERR_WAN_BAD_ARGUMENT');
    expect(err.message).toMatch(/crf/);
    expect(existsSync(path.join(dir, 'x.mp4'))).toBe(false);
  });

  it('an encode aborted midway kills ffmpeg and leaves neither the file nor a temp file', async () => {
    const target = path.join(dir, 'abort');
    const [W, H, F] = [256, 256, 120];
    const v = new Video({ width: W, height: H, fps: 16, numFrames: F, frames: noise(W * H * F * 3, 7) });
    const file = path.join(target, 'slow.webm');
    const controller = new AbortController();
    const saving = v.save(file, { signal: controller.signal });
    // Abort once ffmpeg has started writing its temporary output.
    let sawTemp = false;
    while (!sawTemp) {
      await new Promise((r) => setTimeout(r, 5));
      sawTemp = existsSync(target) && (await readdir(target)).some((n) => n.endsWith('.tmp'));
    }
    controller.abort();
    await expectWanError(saving, 'ERR_WAN_ABORTED');
    expect(await readdir(target)).toEqual([]);
  });

  it('saves sharing one signal leave no listener on it', async () => {
    const controller = new AbortController();
    const v = syntheticVideo(8, 8, 2, 16);
    for (let i = 0; i < 3; i++) await v.save(path.join(dir, `shared-${i}.mp4`), { signal: controller.signal });
    expect(getEventListeners(controller.signal, 'abort')).toHaveLength(0);
  });

  it('a file name as long as the file system allows still saves (the temporary name is short)', async () => {
    const file = path.join(dir, `${'n'.repeat(251)}.mp4`);
    await syntheticVideo(8, 8, 2, 16).save(file);
    expect(existsSync(file)).toBe(true);
  });

  it('an already aborted signal writes nothing', async () => {
    const file = path.join(dir, 'never.mp4');
    await expectWanError(syntheticVideo(8, 8, 1, 16).save(file, { signal: AbortSignal.abort() }), 'ERR_WAN_ABORTED');
    await expectWanError(syntheticVideo(8, 8, 1, 16).save(path.join(dir, 'never-%02d.png'), { signal: AbortSignal.abort() }), 'ERR_WAN_ABORTED');
    expect((await readdir(dir)).filter((n) => n.startsWith('never') || n.startsWith('.never'))).toEqual([]);
  });

  it('a failing ffmpeg leaves no file behind and reports its exit', async () => {
    const saved = process.env.WAN_VIDEO_FFMPEG;
    process.env.WAN_VIDEO_FFMPEG = '/bin/false';
    try {
      const target = path.join(dir, 'fail');
      const err = await expectWanError(syntheticVideo(8, 8, 2, 16).save(path.join(target, 'f.mp4')), 'ERR_WAN_INTERNAL');
      expect(err.message).toMatch(/exited with code 1/);
      expect(await readdir(target)).toEqual([]);
    } finally {
      if (saved === undefined) delete process.env.WAN_VIDEO_FFMPEG;
      else process.env.WAN_VIDEO_FFMPEG = saved;
    }
  });

  it('without ffmpeg on PATH: ERR_WAN_NO_FFMPEG with install advice, while PNG output still works', async () => {
    const savedPath = process.env.PATH;
    const savedFfmpeg = process.env.WAN_VIDEO_FFMPEG;
    process.env.PATH = path.join(dir, 'empty-bin');
    delete process.env.WAN_VIDEO_FFMPEG;
    try {
      const target = path.join(dir, 'noffmpeg');
      const v = syntheticVideo(8, 6, 2, 16);
      const err = await expectWanError(v.save(path.join(target, 'a.mp4')), 'ERR_WAN_NO_FFMPEG');
      expect(err.message).toMatch(/apt-get install ffmpeg/);
      expect(err.message).toMatch(/brew install ffmpeg/);
      expect(await readdir(target)).toEqual([]);
      await v.save(path.join(target, 'f-%d.png'));
      expect((await readdir(target)).sort()).toEqual(['f-0.png', 'f-1.png']);
    } finally {
      process.env.PATH = savedPath;
      if (savedFfmpeg !== undefined) process.env.WAN_VIDEO_FFMPEG = savedFfmpeg;
    }
  });

  it('bad save arguments are ERR_WAN_BAD_ARGUMENT naming the argument, and write nothing', async () => {
    const target = path.join(dir, 'badargs');
    const v = syntheticVideo(8, 8, 1, 16);
    const cases: Array<[() => Promise<unknown>, string]> = [
      [() => v.save(42 as unknown as string), "option 'path' is 42"],
      [() => v.save(path.join(target, 'a\0b.mp4')), "option 'path'"],
      [() => v.save(path.join(target, 'n.mp4'), null as unknown as SaveOptions), "option 'options' is null"],
      // 'toString' is "in" every object: it used to reach FFmpeg as a function.
      [() => v.save(path.join(target, 'q.mp4'), { quality: 'toString' as VideoQuality }), "option 'quality' is \"toString\""],
      [() => v.save(path.join(target, 'u.mp4'), { codec: 'hevc', fps: 5 } as SaveOptions), "option 'codec' is not a save option"],
      [() => v.save(path.join(target, 'c.gif'), { crf: 10n } as unknown as SaveOptions), "option 'crf' is 10n (a BigInt)"],
      [() => v.save(path.join(target, 's.mp4'), { signal: {} } as SaveOptions), "option 'signal' must be an AbortSignal"],
      [() => v.toBuffer('mp4', { fps: 5 } as SaveOptions), "option 'fps' is not a save option"],
    ];
    for (const [save, message] of cases) {
      const err = await expectWanError(save(), 'ERR_WAN_BAD_ARGUMENT');
      expect(err.message).toContain(message);
    }
    expect((await expectWanError(v.save(path.join(target, 'a\0b.mp4')), 'ERR_WAN_BAD_ARGUMENT')).message).toContain('NUL');
    expect(existsSync(target)).toBe(false);
  });

  it('filesystem failures are WanErrors naming the path and the OS reason, with the cause, leaving nothing behind', async () => {
    const target = path.join(dir, 'fsfail');
    await mkdir(path.join(target, 'dir.mp4'), { recursive: true });
    await writeFile(path.join(target, 'afile'), 'x');
    const v = syntheticVideo(8, 8, 2, 16);
    const cases: Array<[string, string]> = [
      [path.join(target, 'afile', 'x.mp4'), 'a parent of it is a file'], // EEXIST / ENOTDIR from mkdir
      [path.join(target, 'afile', 'f-%d.png'), 'a parent of it is a file'],
      [path.join(target, 'dir.mp4'), 'it is a folder; EISDIR'],
      [path.join(target, 'f-%0300d.png'), 'a name in it is too long; ENAMETOOLONG'],
    ];
    for (const [file, reason] of cases) {
      const err = await expectWanError(v.save(file), 'ERR_WAN_BAD_ARGUMENT');
      expect(err.message).toContain(`cannot write '${file}': ${reason}`);
      expect((err.cause as NodeJS.ErrnoException).code).toMatch(/^E[A-Z]+$/);
    }
    expect((await readdir(target)).sort()).toEqual(['afile', 'dir.mp4']);
    expect(await readdir(path.join(target, 'dir.mp4'))).toEqual([]);
  });

  it('a PNG sequence that fails at one frame removes the frames already written', async () => {
    const target = path.join(dir, 'pngfail');
    await mkdir(path.join(target, 'f-2.png'), { recursive: true }); // frame 2's name is taken by a folder
    const err = await expectWanError(syntheticVideo(8, 8, 4, 16).save(path.join(target, 'f-%d.png')), 'ERR_WAN_BAD_ARGUMENT');
    expect(err.message).toContain('EISDIR');
    expect(await readdir(target)).toEqual(['f-2.png']);
  });
});
