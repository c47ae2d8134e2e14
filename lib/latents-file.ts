// Denoised latents on disk, so that a generation whose decode or save failed can be finished later
// (`wan-video decode`): one float32 tensor "latents" [B, C, F', H', W'] in a safetensors file, with
// the model family and the frame rate in its metadata.
import { mkdir, rename, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';

import type { TensorData } from '../binding.js';
import { WanError } from './errors.js';
import { native } from './native.js';

export const LATENTS_SUFFIX = '.latents.safetensors';
const FORMAT = 'wan-video latents';
/** The layout this version writes and reads: bump it when the meaning of the file changes. */
const FORMAT_VERSION = 1;

export interface LatentsFile {
  latents: TensorData;
  /** The model family that made them ('t2v-a14b', ...), when the file says. */
  family?: string;
  /** Frames per second of the video they decode to, when the file says. */
  fps?: number;
}

/** Where `wan-video generate --out OUT` keeps its latents: beside OUT, named after it. */
export function latentsFileFor(out: string): string {
  const base = path.basename(out).replace(/%0?\d*d/g, '').replace(/\.[^.]*$/, '').replace(/[-_.]+$/, '');
  return path.join(path.dirname(out), `${base || 'video'}${LATENTS_SUFFIX}`);
}

/** Writes `latents` (float32, 5-D) to `file` through a temporary file, so a failed write leaves no half file. */
export async function saveLatents(file: string, latents: TensorData, meta: { family: string; fps: number }): Promise<void> {
  if (!(latents.data instanceof Float32Array) || latents.shape.length !== 5) {
    throw new WanError('ERR_WAN_BAD_ARGUMENT', 'latents to save must be a float32 tensor [B, C, F\', H\', W\']');
  }
  const bytes = latents.data.byteLength;
  const header = {
    __metadata__: { format: FORMAT, version: String(FORMAT_VERSION), family: meta.family, fps: String(meta.fps) },
    latents: { dtype: 'F32', shape: latents.shape, data_offsets: [0, bytes] },
  };
  let json = JSON.stringify(header);
  json += ' '.repeat((8 - (json.length % 8)) % 8); // the data starts 8-byte aligned
  const length = Buffer.alloc(8);
  length.writeBigUInt64LE(BigInt(Buffer.byteLength(json)));
  const data = Buffer.from(latents.data.buffer, latents.data.byteOffset, bytes);
  const tmp = `${file}.${process.pid}.tmp`;
  try {
    await mkdir(path.dirname(file), { recursive: true });
    await writeFile(tmp, Buffer.concat([length, Buffer.from(json), data]));
    await rename(tmp, file);
  } catch (err) {
    await rm(tmp, { force: true });
    throw new WanError('ERR_WAN_INTERNAL', `cannot write ${file}: ${(err as Error).message}`, { cause: err });
  }
}

/**
 * Reads a file written by saveLatents (or any safetensors file with a float32 5-D tensor "latents",
 * e.g. saved from Python); one a later wan-video wrote in a layout this one does not know is refused.
 */
export async function loadLatents(file: string): Promise<LatentsFile> {
  const { metadata, tensors } = await native().readSafetensors(file);
  const version = Number(metadata.version ?? 1);
  if (metadata.format === FORMAT && !(Number.isInteger(version) && version >= 1 && version <= FORMAT_VERSION)) {
    throw new WanError('ERR_WAN_BAD_ARGUMENT', `${file} holds latents in layout version ${metadata.version}, which this wan-video (layout ${FORMAT_VERSION}) does not know: decode it with the version that wrote it`);
  }
  const latents = tensors.latents;
  if (!latents || !(latents.data instanceof Float32Array) || latents.shape.length !== 5) {
    throw new WanError('ERR_WAN_BAD_ARGUMENT', `${file} holds no float32 tensor 'latents' [B, C, F', H', W'] (the file wan-video generate keeps)`);
  }
  const fps = Number(metadata.fps);
  return { latents, family: metadata.family, fps: Number.isFinite(fps) && fps > 0 ? fps : undefined };
}
