// Pillow's Image.resize(size, Image.LANCZOS) for 8-bit RGB, reproduced exactly: the reference
// pipelines resize the conditioning image with it (diffusers' VaeImageProcessor, resample
// 'lanczos'), and libvips' lanczos3 differs from it by a few levels. The algorithm of Pillow's
// ImagingResample (libImaging/Resample.c): per output pixel, Lanczos-3 weights over the input span
// it covers (stretched by the scale when shrinking), normalized, in 22-bit fixed point; a
// horizontal pass, rounded to uint8, then a vertical pass over that.

const PRECISION_BITS = 32 - 8 - 2;
const LANCZOS_SUPPORT = 3;

function sinc(x: number): number {
  if (x === 0) return 1;
  const px = x * Math.PI;
  return Math.sin(px) / px;
}

function lanczos(x: number): number {
  return x > -LANCZOS_SUPPORT && x < LANCZOS_SUPPORT ? sinc(x) * sinc(x / LANCZOS_SUPPORT) : 0;
}

/** Per output index: the first input index it reads and its fixed-point weights. */
interface Coefficients {
  first: Int32Array;
  weights: Int32Array[];
}

function coefficients(inSize: number, outSize: number): Coefficients {
  const scale = inSize / outSize;
  const filterScale = Math.max(scale, 1);
  const support = LANCZOS_SUPPORT * filterScale;
  const invScale = 1 / filterScale; // multiplied, as Pillow does: a division can round differently
  const first = new Int32Array(outSize);
  const weights: Int32Array[] = [];
  for (let xx = 0; xx < outSize; xx++) {
    const center = (xx + 0.5) * scale;
    // C's (int) casts: truncation toward zero.
    const xmin = Math.max(Math.trunc(center - support + 0.5), 0);
    const count = Math.min(Math.trunc(center + support + 0.5), inSize) - xmin;
    const k = new Float64Array(count);
    let sum = 0;
    for (let x = 0; x < count; x++) {
      k[x] = lanczos((x + xmin - center + 0.5) * invScale);
      sum += k[x];
    }
    const fixed = new Int32Array(count);
    for (let x = 0; x < count; x++) {
      const w = (sum !== 0 ? k[x] / sum : k[x]) * (1 << PRECISION_BITS);
      fixed[x] = w < 0 ? Math.trunc(-0.5 + w) : Math.trunc(0.5 + w);
    }
    first[xx] = xmin;
    weights.push(fixed);
  }
  return { first, weights };
}

function clip8(sum: number): number {
  const v = Math.floor(sum / (1 << PRECISION_BITS));
  return v < 0 ? 0 : v > 255 ? 255 : v;
}

/** One pass along an axis of an interleaved uint8 image: `stride` between neighbours on that axis. */
function resamplePass(
  src: Uint8Array, dst: Uint8Array, c: Coefficients, lines: number, outSize: number, srcStep: number, srcLine: number, dstStep: number, dstLine: number,
): void {
  const half = 1 << (PRECISION_BITS - 1);
  for (let line = 0; line < lines; line++) {
    for (let o = 0; o < outSize; o++) {
      const k = c.weights[o];
      const base = line * srcLine + c.first[o] * srcStep;
      for (let ch = 0; ch < 3; ch++) {
        let sum = half;
        for (let i = 0; i < k.length; i++) sum += src[base + i * srcStep + ch] * k[i];
        dst[line * dstLine + o * dstStep + ch] = clip8(sum);
      }
    }
  }
}

/** RGB (3 bytes per pixel, rows top to bottom) resized to outWidth x outHeight as Pillow's LANCZOS does. */
export function pilLanczosResize(rgb: Uint8Array, width: number, height: number, outWidth: number, outHeight: number): Uint8Array {
  let image = rgb;
  let w = width;
  if (outWidth !== width) {
    const out = new Uint8Array(outWidth * height * 3);
    resamplePass(image, out, coefficients(width, outWidth), height, outWidth, 3, width * 3, 3, outWidth * 3);
    image = out;
    w = outWidth;
  }
  if (outHeight !== height) {
    const out = new Uint8Array(w * outHeight * 3);
    // Along columns: a "line" is a column (3 bytes apart), neighbours are a row apart.
    resamplePass(image, out, coefficients(height, outHeight), w, outHeight, w * 3, 3, w * 3, 3);
    image = out;
  }
  return image === rgb ? rgb.slice() : image;
}
