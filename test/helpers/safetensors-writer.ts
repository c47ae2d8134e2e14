// Writes a safetensors file from TensorData (tests build modified checkpoints with it).
import { writeFile } from 'node:fs/promises';

import type { TensorData } from '../../lib/tensor.js';

const DTYPE_NAMES: Record<string, string> = { float32: 'F32', float64: 'F64', int64: 'I64', int32: 'I32', uint8: 'U8', bool: 'BOOL' };

/** The bytes of a safetensors file holding `tensors` in insertion order. */
export function safetensorsBytes(tensors: Record<string, TensorData>, metadata?: Record<string, string>): Buffer {
  const header: Record<string, unknown> = {};
  if (metadata) header.__metadata__ = metadata;
  const chunks: Buffer[] = [];
  let offset = 0;
  for (const [name, t] of Object.entries(tensors)) {
    const dtype = DTYPE_NAMES[t.dtype];
    if (!dtype) throw new Error(`safetensors writer: unsupported dtype ${t.dtype} of '${name}'`);
    const bytes = Buffer.from(t.data.buffer, t.data.byteOffset, t.data.byteLength);
    header[name] = { dtype, shape: t.shape, data_offsets: [offset, offset + bytes.length] };
    chunks.push(bytes);
    offset += bytes.length;
  }
  let json = JSON.stringify(header);
  // Pad the header so the data section starts 8-byte aligned, as the reference writer does.
  json += ' '.repeat((8 - ((8 + Buffer.byteLength(json)) % 8)) % 8);
  const headerBytes = Buffer.from(json, 'utf8');
  const length = Buffer.alloc(8);
  length.writeBigUInt64LE(BigInt(headerBytes.length));
  return Buffer.concat([length, headerBytes, ...chunks]);
}

export async function writeSafetensors(path: string, tensors: Record<string, TensorData>, metadata?: Record<string, string>): Promise<void> {
  await writeFile(path, safetensorsBytes(tensors, metadata));
}
