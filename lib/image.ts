// Image-to-video conditioning images: decoded with sharp (PNG/JPEG/WebP files or Buffers) or taken
// as raw RGB(A), resized to the target size, and scaled to [-1, 1] as a [1, 3, H, W] float32 tensor.
// As the reference does it (diffusers' load_image + VaeImageProcessor): EXIF orientation applied, the
// stored RGB values (no colour profile conversion, alpha dropped before resizing, as PIL's
// convert('RGB')), then Pillow's LANCZOS resize.
import sharp from 'sharp';

import type { TensorData } from '../binding.js';
import { badArgument, WanError } from './errors.js';
import { pilLanczosResize } from './pil-resize.js';
import type { ImageInput } from './types.js';

function sharpOf(image: ImageInput): sharp.Sharp {
  // ignoreIcc: PIL hands over the stored values; sharp would convert a Display P3 photo to sRGB.
  if (typeof image === 'string' || Buffer.isBuffer(image)) return sharp(image, { ignoreIcc: true });
  if (image && typeof image === 'object' && (image.data instanceof Uint8Array || image.data instanceof Uint8ClampedArray)) {
    const channels = image.channels ?? 3;
    if (channels !== 3 && channels !== 4) throw badArgument('image.channels', `is ${channels}`, '3 or 4');
    if (!Number.isInteger(image.width) || !Number.isInteger(image.height) || image.width < 1 || image.height < 1)
      throw badArgument('image', 'needs positive integer width and height for raw pixels');
    if (image.data.length !== image.width * image.height * channels)
      throw badArgument('image.data', `has ${image.data.length} bytes, expected width*height*channels = ${image.width * image.height * channels}`);
    return sharp(Buffer.from(image.data.buffer, image.data.byteOffset, image.data.byteLength), { raw: { width: image.width, height: image.height, channels } });
  }
  throw badArgument('image', 'must be a file path, a Buffer with PNG/JPEG/WebP bytes, or raw pixels { data: Uint8Array | Uint8ClampedArray, width, height, channels }');
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

/** The image's 8-bit RGB values as stored, upright (EXIF orientation applied), alpha dropped. */
async function storedRgb(image: ImageInput): Promise<{ rgb: Uint8Array; width: number; height: number }> {
  try {
    const { data, info } = await sharpOf(image).rotate().removeAlpha().toColourspace('srgb').raw({ depth: 'uchar' }).toBuffer({ resolveWithObject: true });
    if (info.channels !== 3) throw new Error(`${info.channels} channels after conversion to RGB`);
    return { rgb: new Uint8Array(data.buffer, data.byteOffset, data.byteLength), width: info.width, height: info.height };
  } catch (err) {
    if (err instanceof WanError) throw err;
    throw badArgument('image', `cannot be decoded (${err instanceof Error ? err.message : err})`);
  }
}

// Byte -> [-1, 1] as diffusers' VaeImageProcessor computes it, in float32 at each step:
// `astype(float32) / 255`, then `2 * x - 1` (Math.fround of one double operation is the float32 one).
const UNIT_RANGE = Float32Array.from({ length: 256 }, (_, v) => Math.fround(Math.fround(Math.fround(v / 255) * 2) - 1));

/** [1, 3, height, width] float32 in [-1, 1], resized as the reference does (Pillow's LANCZOS). */
export async function imageTensor(image: ImageInput, width: number, height: number): Promise<TensorData> {
  const stored = await storedRgb(image);
  const raw = pilLanczosResize(stored.rgb, stored.width, stored.height, width, height);
  const plane = width * height;
  const out = new Float32Array(3 * plane);
  for (let i = 0; i < plane; i++) {
    for (let c = 0; c < 3; c++) out[c * plane + i] = UNIT_RANGE[raw[i * 3 + c]];
  }
  return { dtype: 'float32', shape: [1, 3, height, width], data: out };
}
