// A generated video as 8-bit RGB frames, and how to write it: .mp4 (H.264), .webm (VP9), .gif
// through FFmpeg (lib/ffmpeg.ts), PNG sequences through sharp (no FFmpeg needed).
import { randomBytes } from 'node:crypto';
import { mkdir, mkdtemp, readFile, rename, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';

import sharp from 'sharp';

import type { TensorData } from '../binding.js';
import { badArgument, WanError } from './errors.js';
import { abortedError, runFfmpeg } from './ffmpeg.js';
import { planesToFrames } from './frames.js';
import { describeValue, integer, oneOf, rejectUnknown } from './options.js';
import type { GenerationSettings } from './types.js';

export { floatToUint8 } from './frames.js';

export type VideoFormat = 'mp4' | 'webm' | 'gif';
export type VideoQuality = 'high' | 'medium' | 'low';

export interface SaveOptions {
  /**
   * Constant rate factor (lower = better and bigger). mp4/libx264: 0-51, default from `quality`;
   * webm/libvpx-vp9: 0-63. Ignored for GIF and PNG.
   */
  crf?: number;
  /** Picks the CRF when `crf` is not given: mp4 high 16 / medium 20 / low 28; webm 24 / 32 / 40. Default 'medium'. */
  quality?: VideoQuality;
  /** Aborting kills FFmpeg (or stops the PNG writer) and rejects with ERR_WAN_ABORTED; no file is left behind. */
  signal?: AbortSignal;
}

/** What a save path asks for: a container by extension, or a PNG sequence by a `%d` / `%04d` pattern. */
export type OutputTarget = { kind: VideoFormat } | { kind: 'png'; pattern: string };

const CRF_BY_QUALITY: Record<VideoFormat, Record<VideoQuality, number> | undefined> = {
  mp4: { high: 16, medium: 20, low: 28 },
  webm: { high: 24, medium: 32, low: 40 },
  gif: undefined,
};
const CRF_RANGE: Record<'mp4' | 'webm', [number, number]> = { mp4: [0, 51], webm: [0, 63] };
const QUALITIES = ['high', 'medium', 'low'] as const;
const SAVE_KEYS = ['crf', 'quality', 'signal'] as const;

// A printf-style frame-number placeholder: %d or %0Nd.
const FRAME_PATTERN = /%(0?\d*)d/;

/** Decides the output format from a path; throws ERR_WAN_BAD_ARGUMENT for anything else. */
export function outputTarget(file: string, optionName = 'path'): OutputTarget {
  if (typeof file !== 'string' || file === '') throw badArgument(optionName, `is ${describeValue(file)}`, 'a non-empty file path string');
  // The OS would reject it with an error that cuts the path at the NUL.
  if (file.includes('\0')) throw badArgument(optionName, `${describeValue(file)} contains a NUL character`);
  const ext = path.extname(file).toLowerCase();
  if (ext === '.png') {
    if (!FRAME_PATTERN.test(path.basename(file))) {
      throw badArgument(optionName, `'${file}' is a single .png; a video needs a frame-number pattern`, "e.g. 'frames/frame-%04d.png'");
    }
    return { kind: 'png', pattern: file };
  }
  if (ext === '.mp4' || ext === '.webm' || ext === '.gif') return { kind: ext.slice(1) as VideoFormat };
  throw badArgument(optionName, `'${file}' has an unsupported extension '${ext || '(none)'}'`, ".mp4, .webm, .gif, or a PNG pattern like 'dir/frame-%04d.png'");
}

// Path problems the caller can fix (a file where a folder must be, a folder where the file goes,
// a name too long) are bad arguments; other failures (permissions, disk full) are internal I/O errors.
const PATH_ERRORS = new Set(['EEXIST', 'ENOTDIR', 'EISDIR', 'ENAMETOOLONG']);

/** A filesystem failure while writing `file` as a WanError naming the path and the OS reason, with the original as cause. */
function writeError(err: unknown, file: string): WanError {
  if (err instanceof WanError) return err;
  const code = (err as NodeJS.ErrnoException | undefined)?.code;
  // mkdir -p reports EEXIST when a path component is a file: say that instead of "file already exists".
  const reason =
    code === 'EEXIST' || code === 'ENOTDIR' ? 'a parent of it is a file, not a folder; '
    : code === 'EISDIR' ? 'it is a folder; '
    : code === 'ENAMETOOLONG' ? 'a name in it is too long; '
    : '';
  const detail = err instanceof Error ? err.message : String(err);
  return new WanError(
    code !== undefined && PATH_ERRORS.has(code) ? 'ERR_WAN_BAD_ARGUMENT' : 'ERR_WAN_INTERNAL',
    `wan-video: cannot write '${file}': ${reason}${detail}`,
    { cause: err },
  );
}

// Cleanup after a failure must not replace the error that caused it (rm itself can fail, e.g. ENAMETOOLONG).
async function removeQuietly(file: string): Promise<void> {
  await rm(file, { force: true }).catch(() => undefined);
}

/** The file name of frame `index` (0-based) for a PNG pattern like 'frame-%04d.png'. */
export function framePath(pattern: string, index: number): string {
  const dir = path.dirname(pattern);
  const name = path.basename(pattern).replace(FRAME_PATTERN, (_, width: string) => {
    const digits = width ? Number.parseInt(width, 10) : 0;
    return String(index).padStart(digits, '0');
  });
  return path.join(dir, name);
}

export class Video {
  readonly width: number;
  readonly height: number;
  readonly fps: number;
  readonly numFrames: number;
  /** numFrames x height x width x 3 RGB bytes, row-major. */
  readonly frames: Uint8Array;
  /** From generate(): this video's final latents [1, C, F', H', W'] (normalized, pipeline space). */
  latents?: TensorData;
  /** From generate({ returnFloat: true }): the decoded video [1, 3, F, H, W] float32 in [-1, 1]. */
  float?: TensorData;
  /** From generate(): the settings used after defaults and rounding (size, frames, steps, seed...). */
  settings?: GenerationSettings;

  constructor(init: { width: number; height: number; fps: number; numFrames: number; frames: Uint8Array }) {
    const { width, height, fps, numFrames, frames } = init;
    for (const [name, v] of [['width', width], ['height', height]] as const) {
      if (!Number.isInteger(v) || v < 1) throw badArgument(name, `must be a positive integer, got ${v}`);
    }
    // 0 frames: a generate({ output: 'latents' }) result, which carries latents only.
    if (!Number.isInteger(numFrames) || numFrames < 0) throw badArgument('numFrames', `must be a non-negative integer, got ${numFrames}`);
    if (!(fps > 0) || !Number.isFinite(fps)) throw badArgument('fps', `must be a positive number, got ${fps}`);
    const expected = numFrames * height * width * 3;
    if (frames.length !== expected) {
      throw badArgument('frames', `has ${frames.length} bytes; ${numFrames} x ${height} x ${width} x 3 RGB needs ${expected}`);
    }
    this.width = width;
    this.height = height;
    this.fps = fps;
    this.numFrames = numFrames;
    this.frames = frames;
  }

  /** A video without frames (the result of generate({ output: 'latents' })). */
  static empty(fps: number): Video {
    return new Video({ width: 1, height: 1, fps, numFrames: 0, frames: new Uint8Array(0) });
  }

  /** Decoded video [3, F, H, W] (or [1, 3, F, H, W]) in [-1, 1] -> 8-bit frames (see floatToUint8). */
  static fromFloat(video: TensorData, fps: number): Video {
    let shape = video.shape;
    if (shape.length === 5) {
      if (shape[0] !== 1) throw badArgument('video', `holds ${shape[0]} samples; pass one [3, F, H, W] at a time`);
      shape = shape.slice(1);
    }
    if (shape.length !== 4 || shape[0] !== 3) throw badArgument('video', `must be [3, F, H, W] RGB, got [${video.shape}]`);
    if (!(video.data instanceof Float32Array || video.data instanceof Float64Array)) {
      throw badArgument('video', `must be float32 or float64, got ${video.dtype}`);
    }
    const [, numFrames, height, width] = shape;
    // [C, F, H, W] -> [F, H, W, C]
    return new Video({ width, height, fps, numFrames, frames: planesToFrames(video.data, numFrames, height, width) });
  }

  /** Video `index` of uint8 frames [B, F, H, W, 3] RGB (as the native decode makes them): a view, not a copy. */
  static fromFrames(frames: TensorData, fps: number, index = 0): Video {
    if (frames.shape.length !== 5 || frames.shape[4] !== 3 || !(frames.data instanceof Uint8Array)) {
      throw badArgument('frames', `must be uint8 [B, F, H, W, 3] RGB, got ${frames.dtype} [${frames.shape}]`);
    }
    const [count, numFrames, height, width] = frames.shape;
    if (!Number.isInteger(index) || index < 0 || index >= count) throw badArgument('index', `must be an integer in [0, ${count - 1}], got ${index}`);
    const per = numFrames * height * width * 3;
    return new Video({ width, height, fps, numFrames, frames: frames.data.subarray(index * per, (index + 1) * per) });
  }

  /** Frame `index` as height x width x 3 RGB bytes (a view, not a copy). */
  frame(index: number): Uint8Array {
    if (!Number.isInteger(index) || index < 0 || index >= this.numFrames) {
      throw badArgument('index', `must be an integer in [0, ${this.numFrames - 1}], got ${index}`);
    }
    const size = this.width * this.height * 3;
    return this.frames.subarray(index * size, (index + 1) * size);
  }

  /**
   * Writes the video; the format follows the extension: `.mp4` (H.264, yuv420p, +faststart),
   * `.webm` (VP9), `.gif` (per-video palette), or a PNG sequence `dir/frame-%04d.png` (frame
   * numbers start at 0; written with sharp, no FFmpeg). Missing folders are created. The file is
   * written under a temporary name in the target folder and renamed at the end, so a failed or
   * aborted save leaves nothing under the final name.
   * mp4/webm with an odd width or height get one black column/row padded on the right/bottom
   * (4:2:0 chroma needs even sizes; Wan sizes are always multiples of 16).
   */
  async save(file: string, options: SaveOptions = {}): Promise<void> {
    const target = outputTarget(file);
    checkSaveOptions(options);
    if (this.numFrames === 0) throw badArgument('output', "was 'latents': this result has no frames to save", "'frames'");
    if (options.signal?.aborted) throw abortedError('saving the video');
    if (target.kind === 'png') {
      await this.writePngSequence(target.pattern, options.signal);
      return;
    }
    const args = this.encoderArgs(target.kind, options);
    const dir = path.dirname(path.resolve(file));
    await mkdir(dir, { recursive: true }).catch((err) => {
      throw writeError(err, file);
    });
    // A short name: the target's own may already be as long as the file system allows.
    const temp = path.join(dir, `.wan-${randomBytes(6).toString('hex')}.tmp`);
    try {
      // Create the temp file here so a name or permission problem is a clear error, not an FFmpeg one.
      await writeFile(temp, '').catch((err) => {
        throw writeError(err, file);
      });
      await runFfmpeg([...args, '-y', temp], this.frameChunks(), options.signal);
      await rename(temp, file).catch((err) => {
        throw writeError(err, file);
      });
    } catch (err) {
      await removeQuietly(temp);
      throw err;
    }
  }

  /** The encoded file's bytes (mp4 / webm / gif), via a temporary file. */
  async toBuffer(format: VideoFormat, options: SaveOptions = {}): Promise<Buffer> {
    if (format !== 'mp4' && format !== 'webm' && format !== 'gif') throw badArgument('format', `is ${describeValue(format)}`, 'mp4, webm, gif');
    checkSaveOptions(options);
    const dir = await mkdtemp(path.join(os.tmpdir(), 'wan-video-')).catch((err) => {
      throw writeError(err, os.tmpdir());
    });
    try {
      const file = path.join(dir, `video.${format}`);
      await this.save(file, options);
      return await readFile(file);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  }

  private *frameChunks(): Generator<Uint8Array> {
    for (let i = 0; i < this.numFrames; i++) yield this.frame(i);
  }

  // FFmpeg arguments: raw rgb24 frames on stdin -> the chosen codec and muxer (output path appended by the caller).
  private encoderArgs(format: VideoFormat, options: SaveOptions): string[] {
    const input = ['-f', 'rawvideo', '-pix_fmt', 'rgb24', '-s', `${this.width}x${this.height}`, '-framerate', String(this.fps), '-i', 'pipe:0'];
    if (format === 'gif') {
      // One palette for the whole clip (palettegen), then map every frame onto it (paletteuse).
      return [...input, '-filter_complex', '[0:v]split[a][b];[a]palettegen[p];[b][p]paletteuse', '-loop', '0', '-f', 'gif'];
    }
    const crf = resolveCrf(format, options);
    // RGB -> BT.709 limited-range YUV 4:2:0, tagged as such so players convert back correctly.
    const pad = this.width % 2 || this.height % 2 ? 'pad=ceil(iw/2)*2:ceil(ih/2)*2,' : '';
    const color = [
      '-vf', `${pad}scale=out_color_matrix=bt709:out_range=tv,format=yuv420p`,
      '-colorspace', 'bt709', '-color_primaries', 'bt709', '-color_trc', 'bt709', '-color_range', 'tv',
    ];
    if (format === 'mp4') {
      return [...input, ...color, '-c:v', 'libx264', '-preset', 'medium', '-crf', String(crf), '-movflags', '+faststart', '-f', 'mp4'];
    }
    return [...input, ...color, '-c:v', 'libvpx-vp9', '-crf', String(crf), '-b:v', '0', '-row-mt', '1', '-f', 'webm'];
  }

  private async writePngSequence(pattern: string, signal?: AbortSignal): Promise<void> {
    await mkdir(path.dirname(path.resolve(pattern)), { recursive: true }).catch((err) => {
      throw writeError(err, pattern);
    });
    const suffix = `.${randomBytes(6).toString('hex')}.tmp`;
    const written: Array<{ temp: string; final: string }> = [];
    const renamed: string[] = [];
    try {
      for (let i = 0; i < this.numFrames; i++) {
        if (signal?.aborted) throw abortedError('saving the video');
        const final = framePath(pattern, i);
        const temp = path.join(path.dirname(final), `.${path.basename(final)}${suffix}`);
        const png = await sharp(this.frame(i), { raw: { width: this.width, height: this.height, channels: 3 } }).png().toBuffer();
        written.push({ temp, final });
        await writeFile(temp, png);
      }
      if (signal?.aborted) throw abortedError('saving the video');
      for (const { temp, final } of written) {
        await rename(temp, final);
        renamed.push(final);
      }
    } catch (err) {
      // Frames already renamed go too: a failed save leaves no partial sequence under the final names.
      await Promise.all([...written.map(({ temp }) => removeQuietly(temp)), ...renamed.map(removeQuietly)]);
      throw writeError(err, pattern);
    }
  }
}

/** Save options are checked for every format, even where an option is then ignored (GIF, PNG). */
function checkSaveOptions(options: SaveOptions): void {
  if (options === null || typeof options !== 'object') throw badArgument('options', `is ${describeValue(options)}`, 'an object { crf, quality, signal }');
  rejectUnknown(options, SAVE_KEYS, 'save');
  // oneOf, not `in`: 'toString' is "in" every object and would reach FFmpeg as a function.
  if (options.quality !== undefined) oneOf(options.quality, 'quality', QUALITIES);
  if (options.crf !== undefined) integer(options.crf, 'crf', 0, Math.max(CRF_RANGE.mp4[1], CRF_RANGE.webm[1]));
  if (options.signal !== undefined && !(options.signal instanceof AbortSignal)) throw badArgument('signal', 'must be an AbortSignal');
}

function resolveCrf(format: 'mp4' | 'webm', options: SaveOptions): number {
  const quality = options.quality ?? 'medium';
  const byQuality = CRF_BY_QUALITY[format]!;
  if (options.crf === undefined) return byQuality[quality];
  const [lo, hi] = CRF_RANGE[format];
  if (options.crf < lo || options.crf > hi) {
    throw badArgument('crf', `is ${options.crf} for ${format}`, `integers ${lo}-${hi}`);
  }
  return options.crf;
}
