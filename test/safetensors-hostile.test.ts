// Hostile safetensors files: each must be ERR_WAN_BAD_CHECKPOINT whose message names the file and,
// where there is one, the tensor — never a crash, a hang or a read outside the file.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';

import { native } from '../lib/native.js';
import { bytesOf, imageFromHeader, safetensorsImage } from './helpers/safetensors-writer.js';

const dir = mkdtempSync(path.join(tmpdir(), 'wan-st-hostile-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const valid = safetensorsImage({
  'layer.weight': { dtype: 'F32', shape: [2, 2], bytes: bytesOf(new Float32Array([1, 2, 3, 4])) },
  'layer.bias': { dtype: 'F32', shape: [2], bytes: bytesOf(new Float32Array([5, 6])) },
});

function lengthPrefix(n: bigint): Buffer {
  const b = Buffer.alloc(8);
  b.writeBigUInt64LE(n);
  return b;
}

interface HostileCase {
  name: string;
  image: Buffer;
  /** The tensor the message must name, when the problem is in one tensor's entry. */
  tensor?: string;
  /** A fragment that says what is wrong. */
  says: RegExp;
}

const cases: HostileCase[] = [
  { name: 'empty file', image: Buffer.alloc(0), says: /0 bytes, too short/ },
  { name: 'truncated inside the length prefix', image: valid.subarray(0, 5), says: /too short/ },
  { name: 'truncated inside the header', image: valid.subarray(0, 30), says: /larger than the file/ },
  { name: 'truncated inside the data', image: valid.subarray(0, valid.length - 3), tensor: 'layer.bias', says: /past the end of the data.*truncated/ },
  { name: 'header length larger than the file', image: Buffer.concat([lengthPrefix(5000n), valid.subarray(8)]), says: /header length 5000 is larger than the file/ },
  { name: 'absurdly large header length', image: Buffer.concat([lengthPrefix(2n ** 63n + 17n), valid.subarray(8)]), says: /absurdly large/ },
  { name: 'header length just over the limit', image: Buffer.concat([lengthPrefix(100n * 2n ** 20n + 1n), valid.subarray(8)]), says: /absurdly large/ },
  { name: 'header not JSON', image: imageFromHeader('{"a": {"dtype": "F32",'), says: /not valid JSON/ },
  { name: 'header is binary garbage', image: imageFromHeader('\u0000\u0001\u0002garbage'), says: /not valid JSON/ },
  { name: 'header JSON is an array', image: imageFromHeader('[1, 2, 3]'), says: /JSON array, expected an object/ },
  { name: 'header JSON is a string', image: imageFromHeader('"hello"'), says: /JSON string, expected an object/ },
  { name: 'header nested too deeply', image: imageFromHeader('{"a":' + '['.repeat(100) + ']'.repeat(100) + '}'), says: /nested too deeply/ },
  { name: 'tensor entry not an object', image: imageFromHeader('{"w": 3}'), tensor: 'w', says: /entry is not an object/ },
  { name: 'missing dtype', image: imageFromHeader('{"w": {"shape": [1], "data_offsets": [0, 4]}}', Buffer.alloc(4)), tensor: 'w', says: /'dtype'/ },
  { name: 'shape not an array', image: imageFromHeader('{"w": {"dtype": "F32", "shape": 4, "data_offsets": [0, 16]}}', Buffer.alloc(16)), tensor: 'w', says: /'shape'/ },
  { name: 'negative shape entry', image: imageFromHeader('{"w": {"dtype": "F32", "shape": [-1], "data_offsets": [0, 4]}}', Buffer.alloc(4)), tensor: 'w', says: /shape entries must be non-negative integers/ },
  { name: 'fractional shape entry', image: imageFromHeader('{"w": {"dtype": "F32", "shape": [1.5], "data_offsets": [0, 4]}}', Buffer.alloc(4)), tensor: 'w', says: /shape entries/ },
  { name: 'too many dimensions', image: imageFromHeader(JSON.stringify({ w: { dtype: 'U8', shape: Array(17).fill(1), data_offsets: [0, 1] } }), Buffer.alloc(1)), tensor: 'w', says: /more than 16 dimensions/ },
  { name: 'empty tensor with huge dims (int64 stride overflow)', image: imageFromHeader(JSON.stringify({ w: { dtype: 'F32', shape: [0, 2 ** 40, 2 ** 40], data_offsets: [0, 0] } })), tensor: 'w', says: /more than 2\^53 elements/ },
  { name: 'data_offsets of one integer', image: imageFromHeader('{"w": {"dtype": "U8", "shape": [1], "data_offsets": [0]}}', Buffer.alloc(1)), tensor: 'w', says: /'data_offsets' must be an array of two integers/ },
  { name: 'data_offsets of three integers', image: imageFromHeader('{"w": {"dtype": "U8", "shape": [1], "data_offsets": [0, 1, 1]}}', Buffer.alloc(1)), tensor: 'w', says: /'data_offsets' must be an array of two integers/ },
  { name: 'data_offsets missing', image: imageFromHeader('{"w": {"dtype": "U8", "shape": [1]}}', Buffer.alloc(1)), tensor: 'w', says: /'data_offsets' must be an array of two integers/ },
  { name: 'negative data_offsets', image: imageFromHeader('{"w": {"dtype": "U8", "shape": [1], "data_offsets": [-1, 0]}}', Buffer.alloc(1)), tensor: 'w', says: /non-negative integers/ },
  { name: 'reversed data_offsets', image: imageFromHeader('{"w": {"dtype": "U8", "shape": [0], "data_offsets": [4, 2]}}', Buffer.alloc(8)), tensor: 'w', says: /reversed/ },
  { name: 'data_offsets past the end of the data', image: imageFromHeader('{"w": {"dtype": "F32", "shape": [4], "data_offsets": [16, 32]}}', Buffer.alloc(24)), tensor: 'w', says: /past the end of the data/ },
  { name: 'data_offsets beyond 2^64', image: imageFromHeader('{"w": {"dtype": "U8", "shape": [1], "data_offsets": [18446744073709551615, 18446744073709551616]}}', Buffer.alloc(1)), tensor: 'w', says: /non-negative integers/ },
  { name: 'data_offsets not matching shape x dtype size', image: imageFromHeader('{"w": {"dtype": "F32", "shape": [2, 2], "data_offsets": [0, 12]}}', Buffer.alloc(16)), tensor: 'w', says: /holds 12 bytes but its shape and dtype F32 need 16/ },
  { name: 'shape x dtype size overflowing 2^64', image: imageFromHeader('{"w": {"dtype": "F64", "shape": [4611686018427387904, 4611686018427387904], "data_offsets": [0, 8]}}', Buffer.alloc(8)), tensor: 'w', says: /more than 2\^53 elements|more than 2\^64/ },
  {
    name: 'overlapping tensors',
    image: imageFromHeader('{"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}, "b": {"dtype": "F32", "shape": [2], "data_offsets": [4, 12]}}', Buffer.alloc(12)),
    tensor: 'b',
    says: /'a' and 'b' overlap/,
  },
  { name: 'unknown dtype', image: imageFromHeader('{"w": {"dtype": "F128", "shape": [1], "data_offsets": [0, 16]}}', Buffer.alloc(16)), tensor: 'w', says: /unknown dtype 'F128'/ },
  { name: 'lower-case dtype', image: imageFromHeader('{"w": {"dtype": "f32", "shape": [1], "data_offsets": [0, 4]}}', Buffer.alloc(4)), tensor: 'w', says: /unknown dtype 'f32'/ },
  {
    name: 'duplicate tensor names',
    image: imageFromHeader('{"w": {"dtype": "U8", "shape": [1], "data_offsets": [0, 1]}, "w": {"dtype": "U8", "shape": [1], "data_offsets": [1, 2]}}', Buffer.alloc(2)),
    tensor: 'w',
    says: /appears twice/,
  },
  { name: '__metadata__ not an object', image: imageFromHeader('{"__metadata__": [1]}'), says: /__metadata__ must be an object/ },
];

describe('hostile safetensors files are ERR_WAN_BAD_CHECKPOINT naming file and tensor', () => {
  for (const c of cases) {
    it(c.name, async () => {
      const file = path.join(dir, `${c.name.replace(/[^a-z0-9]+/gi, '-')}.safetensors`);
      writeFileSync(file, c.image);
      for (const call of [() => native().readSafetensors(file), () => native().describeTensors(file)]) {
        const err = await call().then(() => undefined, (e: any) => e);
        expect(err, 'must reject').toBeDefined();
        expect(err.code).toBe('ERR_WAN_BAD_CHECKPOINT');
        expect(err.message).toContain(file);
        if (c.tensor) expect(err.message).toContain(`'${c.tensor}'`);
        // What it says, apart from the file name (which repeats the case's name).
        expect(err.message.replaceAll(file, '<file>')).toMatch(c.says);
      }
    });
  }

  it('the valid file these are cut from reads fine', async () => {
    const file = path.join(dir, 'valid.safetensors');
    writeFileSync(file, valid);
    const got = await native().readSafetensors(file);
    expect(Array.from(got.tensors['layer.weight'].data as Float32Array)).toEqual([1, 2, 3, 4]);
  });

  it('a header of a million tiny values stays bounded (JSON value limit)', async () => {
    const file = path.join(dir, 'many-values.safetensors');
    writeFileSync(file, imageFromHeader('{"__metadata__": {}, "x": [' + '0,'.repeat(1_100_000) + '0]}'));
    await expect(native().readSafetensors(file)).rejects.toMatchObject({ code: 'ERR_WAN_BAD_CHECKPOINT', message: expect.stringMatching(/more than \d+ values/) });
  });

  it('a folder or a device file is not a safetensors file', async () => {
    await expect(native().readSafetensors(dir)).rejects.toMatchObject({ code: 'ERR_WAN_BAD_CHECKPOINT', message: `${dir} is not a regular file` });
    await expect(native().readSafetensors('/dev/zero')).rejects.toMatchObject({ code: 'ERR_WAN_BAD_CHECKPOINT', message: expect.stringContaining('/dev/zero') });
  });
});
