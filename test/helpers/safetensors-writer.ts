// A small safetensors writer for tests: builds file images from typed values, and lets tests
// write hostile images (raw headers, wrong offsets) that no real writer would produce.
import { writeFileSync } from 'node:fs';

import type { TensorData } from '../../lib/tensor.js';

export type SafetensorsDtype = 'F64' | 'F32' | 'F16' | 'BF16' | 'F8_E4M3' | 'F8_E5M2' | 'I64' | 'I32' | 'I16' | 'I8' | 'U8' | 'BOOL';

export const dtypeBytes: Record<SafetensorsDtype, number> = {
  F64: 8, F32: 4, F16: 2, BF16: 2, F8_E4M3: 1, F8_E5M2: 1, I64: 8, I32: 4, I16: 2, I8: 1, U8: 1, BOOL: 1,
};

export interface TensorSpec {
  dtype: SafetensorsDtype;
  shape: number[];
  /** The raw little-endian bytes of the tensor. */
  bytes: Uint8Array;
}

/** Header entries as written: any JSON value, so tests can write invalid ones. */
export type RawHeader = Record<string, unknown>;

/** The 8-byte little-endian length, the header text padded with spaces to `align`, then the data. */
export function imageFromHeader(headerText: string, data: Uint8Array = new Uint8Array(0), align = 8): Buffer {
  let text = headerText;
  while ((8 + Buffer.byteLength(text)) % align !== 0) text += ' ';
  const header = Buffer.from(text, 'utf8');
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(BigInt(header.length));
  return Buffer.concat([len, header, Buffer.from(data.buffer, data.byteOffset, data.byteLength)]);
}

/** A valid file image holding `tensors` in insertion order, with optional __metadata__. */
export function safetensorsImage(tensors: Record<string, TensorSpec>, metadata?: Record<string, string>): Buffer {
  const header: RawHeader = {};
  if (metadata) header.__metadata__ = metadata;
  const chunks: Uint8Array[] = [];
  let offset = 0;
  for (const [name, t] of Object.entries(tensors)) {
    const need = t.shape.reduce((a, b) => a * b, 1) * dtypeBytes[t.dtype];
    if (need !== t.bytes.byteLength) throw new Error(`test writer: ${name} has ${t.bytes.byteLength} bytes, shape needs ${need}`);
    header[name] = { dtype: t.dtype, shape: t.shape, data_offsets: [offset, offset + t.bytes.byteLength] };
    chunks.push(t.bytes);
    offset += t.bytes.byteLength;
  }
  return imageFromHeader(JSON.stringify(header), Buffer.concat(chunks.map((c) => Buffer.from(c.buffer, c.byteOffset, c.byteLength))));
}

export function writeSafetensors(path: string, tensors: Record<string, TensorSpec>, metadata?: Record<string, string>): void {
  writeFileSync(path, safetensorsImage(tensors, metadata));
}

/** Bytes of a typed array (little-endian on every platform node runs on here). */
export function bytesOf(a: ArrayBufferView): Uint8Array {
  return new Uint8Array(a.buffer, a.byteOffset, a.byteLength);
}

export function f32(shape: number[], values: number[]): TensorSpec {
  return { dtype: 'F32', shape, bytes: bytesOf(new Float32Array(values)) };
}

const SPEC_DTYPES: Record<string, SafetensorsDtype> = { float32: 'F32', float64: 'F64', int64: 'I64', int32: 'I32', uint8: 'U8', bool: 'BOOL' };

/** A TensorData (the addon's exchange format, e.g. from readSafetensors) as a TensorSpec. */
export function specOf(t: TensorData): TensorSpec {
  const dtype = SPEC_DTYPES[t.dtype];
  if (!dtype) throw new Error(`test writer: unsupported dtype ${t.dtype}`);
  return { dtype, shape: t.shape, bytes: bytesOf(t.data) };
}

/** Writes tensors given as TensorData (e.g. a checkpoint read back and modified). */
export function writeTensorData(path: string, tensors: Record<string, TensorData>, metadata?: Record<string, string>): void {
  writeSafetensors(path, Object.fromEntries(Object.entries(tensors).map(([n, t]) => [n, specOf(t)])), metadata);
}
