// Image-to-video conditioning images: decoded with sharp (PNG/JPEG/WebP files or Buffers) or taken
// as raw RGB(A), resized to the target size, and scaled to [-1, 1] as a [1, 3, H, W] float32 tensor.
import sharp from 'sharp';

import type { TensorData } from '../binding.js';
import { badArgument, WanError } from './errors.js';
import type { ImageInput } from './types.js';

function sharpOf(image: ImageInput): sharp.Sharp {
  if (typeof image === 'string' || Buffer.isBuffer(image)) return sharp(image);
  if (image && typeof image === 'object' && image.data instanceof Uint8Array) {
    const channels = image.channels ?? 3;
    if (channels !== 3 && channels !== 4) throw badArgument('image.channels', `is ${channels}`, '3 or 4');
    if (!Number.isInteger(image.width) || !Number.isInteger(image.height) || image.width < 1 || image.height < 1)
      throw badArgument('image', 'needs positive integer width and height for raw pixels');
    if (image.data.length !== image.width * image.height * channels)
      throw badArgument('image.data', `has ${image.data.length} bytes, expected width*height*channels = ${image.width * image.height * channels}`);
    return sharp(Buffer.from(image.data.buffer, image.data.byteOffset, image.data.byteLength), { raw: { width: image.width, height: image.height, channels } });
  }
  throw badArgument('image', 'must be a file path, a Buffer with PNG/JPEG bytes, or { data, width, height, channels }');
}

/** Width and height of the image (after EXIF rotation). */
export async function imageSize(image: ImageInput): Promise<{ width: number; height: number }> {
  try {
    const meta = await sharpOf(image).rotate().metadata();
    if (!meta.width || !meta.height) throw new Error('no size');
    const swap = (meta.orientation ?? 1) >= 5;
    return swap ? { width: meta.height, height: meta.width } : { width: meta.width, height: meta.height };
  } catch (err) {
    if (err instanceof WanError) throw err;
    throw badArgument('image', `cannot be decoded (${err instanceof Error ? err.message : err})`);
  }
}

/**
 * The size an I2V pipeline uses for an image: the image's aspect at `area` pixels, each side rounded
 * down to `multiple` (as the reference examples compute it).
 */
export function fitToArea(width: number, height: number, area: number, multiple: number): { width: number; height: number } {
  const aspect = height / width;
  const h = Math.floor(Math.round(Math.sqrt(area * aspect)) / multiple) * multiple;
  const w = Math.floor(Math.round(Math.sqrt(area / aspect)) / multiple) * multiple;
  return { width: Math.max(w, multiple), height: Math.max(h, multiple) };
}

/** [1, 3, height, width] float32 in [-1, 1], resized (Lanczos, like the reference's PIL resize). */
export async function imageTensor(image: ImageInput, width: number, height: number): Promise<TensorData> {
  let raw: Buffer;
  try {
    raw = await sharpOf(image).rotate().removeAlpha().resize(width, height, { fit: 'fill', kernel: 'lanczos3' }).raw().toBuffer();
  } catch (err) {
    if (err instanceof WanError) throw err;
    throw badArgument('image', `cannot be decoded (${err instanceof Error ? err.message : err})`);
  }
  const plane = width * height;
  const out = new Float32Array(3 * plane);
  for (let i = 0; i < plane; i++) {
    for (let c = 0; c < 3; c++) out[c * plane + i] = (raw[i * 3 + c] / 255) * 2 - 1;
  }
  return { dtype: 'float32', shape: [1, 3, height, width], data: out };
}
