// The conditioning image as the reference prepares it (test/fixtures/image-resize, made by Pillow:
// make.py there): EXIF orientation, the stored RGB values (alpha dropped, colour profile ignored),
// Pillow's LANCZOS resize. Exact: the same uint8 values, so the same [-1, 1] tensor.
import { readFileSync } from 'node:fs';
import path from 'node:path';
import sharp from 'sharp';
import { describe, expect, it } from 'vitest';

import { imageTensor } from '../lib/image.js';
import { pilLanczosResize } from '../lib/pil-resize.js';

const DIR = path.join(import.meta.dirname, 'fixtures', 'image-resize');
const manifest: { cases: Array<{ input: string; width: number; height: number; reference: string }> } = JSON.parse(
  readFileSync(path.join(DIR, 'manifest.json'), 'utf8'),
);

/** A byte in [-1, 1] as diffusers computes it with numpy/torch float32: (v / 255) then 2 * x - 1, each
 *  operation rounded to float32 (what Math.fround of the one double operation gives). */
const unitRange = (v: number) => Math.fround(Math.fround(Math.fround(v / 255) * 2) - 1);

async function referenceTensor(file: string) {
  const { data, info } = await sharp(path.join(DIR, file), { ignoreIcc: true }).raw().toBuffer({ resolveWithObject: true });
  const plane = info.width * info.height;
  const out = new Float32Array(3 * plane);
  for (let i = 0; i < plane; i++) for (let c = 0; c < 3; c++) out[c * plane + i] = unitRange(data[i * 3 + c]);
  return out;
}

describe('conditioning image', () => {
  it('every byte value becomes exactly the float32 value diffusers makes of it', async () => {
    const width = 256;
    const data = new Uint8Array(width * 3);
    for (let x = 0; x < width; x++) data.fill(x, x * 3, x * 3 + 3);
    const t = await imageTensor({ data, width, height: 1, channels: 3 }, width, 1);
    const got = Array.from((t.data as Float32Array).subarray(0, width));
    // numpy printed -0.9921568632125854 for 1 (np.float32(1) / 255 * 2 - 1); 128 of the 256 values
    // differ by one float32 ulp from the float64 formula rounded once.
    expect(got[1]).toBe(-0.9921568632125854);
    expect(got).toEqual(Array.from({ length: width }, (_, v) => unitRange(v)));
  });

  for (const c of manifest.cases) {
    it(`${c.input} at ${c.width}x${c.height} equals the reference (Pillow) exactly`, async () => {
      const ours = await imageTensor(path.join(DIR, c.input), c.width, c.height);
      expect(ours.shape).toEqual([1, 3, c.height, c.width]);
      const ref = await referenceTensor(c.reference);
      let worst = 0;
      for (let i = 0; i < ref.length; i++) worst = Math.max(worst, Math.abs((ours.data as Float32Array)[i] - ref[i]));
      expect(worst).toBe(0);
    });
  }

  it('takes raw RGBA pixels (a Uint8ClampedArray from a canvas too) as the PNG of the same pixels', async () => {
    const { data, info } = await sharp(path.join(DIR, 'rgba.png')).raw().toBuffer({ resolveWithObject: true });
    const fromPng = await imageTensor(path.join(DIR, 'rgba.png'), 40, 32);
    const fromRaw = await imageTensor({ data: new Uint8ClampedArray(data), width: info.width, height: info.height, channels: 4 }, 40, 32);
    expect(fromRaw.data).toEqual(fromPng.data);
  });

  it('resizing to the same size changes nothing', () => {
    const rgb = Uint8Array.from({ length: 5 * 4 * 3 }, (_, i) => (i * 37) % 256);
    expect(pilLanczosResize(rgb, 5, 4, 5, 4)).toEqual(rgb);
  });
});
