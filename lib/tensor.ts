// Small helpers on TensorData (the addon's tensor exchange format).
import type { TensorData } from '../binding.js';

export type { TensorData };

export function numel(shape: readonly number[]): number {
  return shape.reduce((a, b) => a * b, 1);
}

export function toFloat64(t: TensorData): Float64Array {
  if (t.data instanceof BigInt64Array) return Float64Array.from(t.data, (x) => Number(x));
  return Float64Array.from(t.data as ArrayLike<number>);
}

export function float32Tensor(shape: number[], data?: ArrayLike<number>): TensorData {
  const out = new Float32Array(numel(shape));
  if (data) out.set(data);
  return { dtype: 'float32', shape, data: out };
}

export function int64Tensor(shape: number[], data: ArrayLike<number | bigint>): TensorData {
  return { dtype: 'int64', shape, data: BigInt64Array.from(Array.from(data), (x) => BigInt(x)) };
}

export function sameShape(a: TensorData, b: TensorData): boolean {
  return a.shape.length === b.shape.length && a.shape.every((n, i) => n === b.shape[i]);
}

/** The fixtures' metric: max|out - ref| / max|ref| over the whole tensor (shapes must match). */
export function maxRelError(out: TensorData, ref: TensorData): number {
  if (!sameShape(out, ref)) {
    throw new Error(`shape mismatch: got [${out.shape}] expected [${ref.shape}]`);
  }
  const a = toFloat64(out);
  const b = toFloat64(ref);
  let maxDiff = 0;
  let maxRef = 0;
  for (let i = 0; i < b.length; i++) {
    const d = Math.abs(a[i] - b[i]);
    if (Number.isNaN(d)) return Number.POSITIVE_INFINITY; // a NaN anywhere fails any tolerance
    if (d > maxDiff) maxDiff = d;
    const r = Math.abs(b[i]);
    if (r > maxRef) maxRef = r;
  }
  return maxRef === 0 ? maxDiff : maxDiff / maxRef;
}

/** Rows [0, rows) along dim 1 of a [B, S, D] tensor (fixtures store prompt embeddings' head). */
export function headRows(t: TensorData, rows: number): TensorData {
  if (t.shape.length !== 3 || t.shape[1] < rows) throw new Error(`expected [B, S >= ${rows}, D], got [${t.shape}]`);
  const [b, s, d] = t.shape;
  const src = toFloat64(t);
  const out = new Float64Array(b * rows * d);
  for (let i = 0; i < b; i++) out.set(src.subarray(i * s * d, i * s * d + rows * d), i * rows * d);
  return { dtype: 'float64', shape: [b, rows, d], data: out };
}

/** Values of a [B, S, D] tensor at rows >= `from` along dim 1 that are not exactly 0 (NaN counts). */
export function nonZeroPastRow(t: TensorData, from: number): number {
  if (t.shape.length !== 3) throw new Error(`expected [B, S, D], got [${t.shape}]`);
  const [b, s, d] = t.shape;
  const src = toFloat64(t);
  let n = 0;
  for (let i = 0; i < b; i++) {
    for (let j = i * s * d + from * d; j < (i + 1) * s * d; j++) if (src[j] !== 0) n++;
  }
  return n;
}
