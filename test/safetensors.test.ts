// The safetensors reader on files written here: every dtype round-trips, __metadata__, sharded
// folders, and unaligned data. Hostile files are in safetensors-hostile.test.ts.
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';

import { native } from '../lib/native.js';
import { bytesOf, dtypeBytes, imageFromHeader, safetensorsImage, writeSafetensors, type SafetensorsDtype, type TensorSpec } from './helpers/safetensors-writer.js';

const dir = mkdtempSync(path.join(tmpdir(), 'wan-st-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** float32 -> IEEE half bits, for values exactly representable in half. */
function halfBits(x: number): number {
  if (x === 0) return Object.is(x, -0) ? 0x8000 : 0;
  const sign = x < 0 ? 0x8000 : 0;
  const a = Math.abs(x);
  const e = Math.floor(Math.log2(a));
  const mant = a / 2 ** e - 1;
  const bits = sign | ((e + 15) << 10) | Math.round(mant * 1024);
  return bits;
}

/** float32 -> bfloat16 bits (exact for values with 8 significant bits). */
function bf16Bits(x: number): number {
  const f = new Float32Array([x]);
  return new Uint32Array(f.buffer)[0] >>> 16;
}

const floats = [0, 1, -2, 0.5, 3.25, -1024, 0.125, 7];

function specFor(dtype: SafetensorsDtype): { spec: TensorSpec; expected: number[] | bigint[] | boolean[] } {
  const shape = [2, 4];
  switch (dtype) {
    case 'F64': return { spec: { dtype, shape, bytes: bytesOf(new Float64Array(floats.map((v) => v + 1e-12))) }, expected: floats.map((v) => v + 1e-12) };
    case 'F32': return { spec: { dtype, shape, bytes: bytesOf(new Float32Array(floats)) }, expected: floats };
    case 'F16': return { spec: { dtype, shape, bytes: bytesOf(new Uint16Array(floats.map(halfBits))) }, expected: floats };
    case 'BF16': return { spec: { dtype, shape, bytes: bytesOf(new Uint16Array(floats.map(bf16Bits))) }, expected: floats };
    // e4m3fn: 0x38 = 1.0, 0xC0 = -2.0, 0x30 = 0.5; e5m2: 0x3C = 1.0, 0xC0 = -2.0, 0x38 = 0.5
    case 'F8_E4M3': return { spec: { dtype, shape: [4], bytes: new Uint8Array([0x00, 0x38, 0xc0, 0x30]) }, expected: [0, 1, -2, 0.5] };
    case 'F8_E5M2': return { spec: { dtype, shape: [4], bytes: new Uint8Array([0x00, 0x3c, 0xc0, 0x38]) }, expected: [0, 1, -2, 0.5] };
    case 'I64': {
      const v = [0n, 1n, -1n, 9007199254740993n, -(2n ** 63n), 2n ** 63n - 1n, 42n, -7n];
      return { spec: { dtype, shape, bytes: bytesOf(new BigInt64Array(v)) }, expected: v };
    }
    case 'I32': {
      const v = [0, 1, -1, 2147483647, -2147483648, 5, -6, 7];
      return { spec: { dtype, shape, bytes: bytesOf(new Int32Array(v)) }, expected: v };
    }
    case 'I16': {
      const v = [0, 1, -1, 32767, -32768, 5, -6, 7];
      return { spec: { dtype, shape, bytes: bytesOf(new Int16Array(v)) }, expected: v };
    }
    case 'I8': {
      const v = [0, 1, -1, 127, -128, 5, -6, 7];
      return { spec: { dtype, shape, bytes: bytesOf(new Int8Array(v)) }, expected: v };
    }
    case 'U8': {
      const v = [0, 1, 255, 128, 3, 4, 5, 6];
      return { spec: { dtype, shape, bytes: new Uint8Array(v) }, expected: v };
    }
    case 'BOOL': {
      const v = [true, false, true, true, false, false, true, false];
      return { spec: { dtype, shape, bytes: new Uint8Array(v.map(Number)) }, expected: v };
    }
  }
}

function libtorchAtLeast(major: number, minor: number): boolean {
  const [ma, mi] = native().runtimeInfo().libtorchVersion.split('.').map(Number);
  return ma > major || (ma === major && mi >= minor);
}

// What readSafetensors returns for each stored dtype (JS has no 16-bit float or 8/16-bit int tensors).
const jsDtype: Record<SafetensorsDtype, string> = {
  F64: 'float64', F32: 'float32', F16: 'float32', BF16: 'float32', F8_E4M3: 'float32', F8_E5M2: 'float32',
  I64: 'int64', I32: 'int32', I16: 'float32', I8: 'float32', U8: 'uint8', BOOL: 'bool',
};

describe('readSafetensors: every dtype round-trips', () => {
  const dtypes = Object.keys(dtypeBytes) as SafetensorsDtype[];
  for (const dtype of dtypes) {
    const fp8 = dtype.startsWith('F8_');
    it(`${dtype}${fp8 ? (libtorchAtLeast(2, 1) ? ' (libtorch >= 2.1: supported)' : ' (libtorch < 2.1: clear error)') : ''}`, async () => {
      const { spec, expected } = specFor(dtype);
      const file = path.join(dir, `dtype-${dtype}.safetensors`);
      writeSafetensors(file, { 'block.weight': spec });
      if (fp8 && !libtorchAtLeast(2, 1)) {
        const err = await native().readSafetensors(file).then(() => undefined, (e) => e);
        expect(err?.code).toBe('ERR_WAN_BAD_CHECKPOINT');
        expect(err.message).toContain(file);
        expect(err.message).toContain("'block.weight'");
        expect(err.message).toMatch(new RegExp(`${dtype}.*libtorch >= 2\\.1`));
        // The header alone is fine: describeTensors lists fp8 tensors on any libtorch.
        const listed = await native().describeTensors(file);
        expect(listed.tensors[0]).toMatchObject({ name: 'block.weight', dtype, shape: spec.shape });
        return;
      }
      const got = await native().readSafetensors(file);
      const t = got.tensors['block.weight'];
      expect(t.shape).toEqual(spec.shape);
      expect(t.dtype).toBe(jsDtype[dtype]);
      const values = dtype === 'BOOL' ? Array.from(t.data as Uint8Array, (v) => v !== 0) : Array.from(t.data as ArrayLike<number | bigint>);
      expect(values).toEqual(expected);
    });
  }

  it('several tensors, a scalar and an empty tensor in one file', async () => {
    const file = path.join(dir, 'mixed.safetensors');
    writeSafetensors(file, {
      a: { dtype: 'F32', shape: [3], bytes: bytesOf(new Float32Array([1, 2, 3])) },
      scalar: { dtype: 'F64', shape: [], bytes: bytesOf(new Float64Array([Math.PI])) },
      empty: { dtype: 'F16', shape: [0, 5], bytes: new Uint8Array(0) },
      b: { dtype: 'I32', shape: [1, 2], bytes: bytesOf(new Int32Array([-5, 6])) },
    });
    const got = await native().readSafetensors(file);
    expect(Object.keys(got.tensors).sort()).toEqual(['a', 'b', 'empty', 'scalar']);
    expect(Array.from(got.tensors.a.data as Float32Array)).toEqual([1, 2, 3]);
    expect(got.tensors.scalar.shape).toEqual([]);
    expect((got.tensors.scalar.data as Float64Array)[0]).toBe(Math.PI);
    expect(got.tensors.empty.shape).toEqual([0, 5]);
    expect(got.tensors.empty.data.length).toBe(0);
    expect(Array.from(got.tensors.b.data as Int32Array)).toEqual([-5, 6]);
  });

  it('data not aligned for its dtype (odd header length) is read correctly', async () => {
    const file = path.join(dir, 'unaligned.safetensors');
    const values = new Float64Array([1.5, -2.25, 1e300]);
    let header = JSON.stringify({ x: { dtype: 'F64', shape: [3], data_offsets: [0, 24] } });
    if ((8 + header.length) % 2 === 0) header += ' ';
    writeFileSync(file, imageFromHeader(header, bytesOf(values), 1));
    const got = await native().readSafetensors(file);
    expect(Array.from(got.tensors.x.data as Float64Array)).toEqual(Array.from(values));
  });
});

describe('__metadata__', () => {
  it('is returned as a string map and is not a tensor', async () => {
    const file = path.join(dir, 'meta.safetensors');
    writeSafetensors(file, { w: { dtype: 'U8', shape: [1], bytes: new Uint8Array([9]) } }, { format: 'pt', 'note "quoted"': 'ünïcode\n' });
    const got = await native().readSafetensors(file);
    expect(got.metadata).toEqual({ format: 'pt', 'note "quoted"': 'ünïcode\n' });
    expect(Object.keys(got.tensors)).toEqual(['w']);
    const listed = await native().describeTensors(file);
    expect(listed.tensors.map((t) => t.name)).toEqual(['w']);
  });

  it('a non-string metadata value is ERR_WAN_BAD_CHECKPOINT', async () => {
    const file = path.join(dir, 'meta-bad.safetensors');
    writeFileSync(file, imageFromHeader(JSON.stringify({ __metadata__: { format: 1 } })));
    await expect(native().readSafetensors(file)).rejects.toMatchObject({ code: 'ERR_WAN_BAD_CHECKPOINT', message: expect.stringContaining("__metadata__ value 'format'") });
  });
});

describe('describeTensors on folders', () => {
  function shardedFolder(name: string, weightMap: Record<string, string>): string {
    const folder = path.join(dir, name);
    mkdirSync(folder, { recursive: true });
    writeSafetensors(path.join(folder, 'model-00001-of-00002.safetensors'), {
      'a.weight': { dtype: 'F32', shape: [2, 3], bytes: bytesOf(new Float32Array(6)) },
      'a.bias': { dtype: 'F32', shape: [2], bytes: bytesOf(new Float32Array(2)) },
    });
    writeSafetensors(path.join(folder, 'model-00002-of-00002.safetensors'), {
      'b.weight': { dtype: 'BF16', shape: [4, 4], bytes: new Uint8Array(32) },
    });
    writeFileSync(path.join(folder, 'model.safetensors.index.json'), JSON.stringify({ metadata: { total_size: 88 }, weight_map: weightMap }));
    return folder;
  }
  const goodMap = { 'a.weight': 'model-00001-of-00002.safetensors', 'a.bias': 'model-00001-of-00002.safetensors', 'b.weight': 'model-00002-of-00002.safetensors' };

  it('a sharded folder through *.safetensors.index.json', async () => {
    const folder = shardedFolder('sharded', goodMap);
    const got = await native().describeTensors(folder);
    expect(got.source).toBe(path.join(folder, 'model.safetensors.index.json'));
    expect(got.totalBytes).toBe(24 + 8 + 32);
    const byName = Object.fromEntries(got.tensors.map((t) => [t.name, t]));
    expect(Object.keys(byName).sort()).toEqual(['a.bias', 'a.weight', 'b.weight']);
    expect(byName['a.weight']).toMatchObject({ dtype: 'F32', shape: [2, 3], file: path.join(folder, 'model-00001-of-00002.safetensors') });
    expect(byName['b.weight']).toMatchObject({ dtype: 'BF16', shape: [4, 4], file: path.join(folder, 'model-00002-of-00002.safetensors') });
    // The index file itself works as the path too.
    const viaIndex = await native().describeTensors(path.join(folder, 'model.safetensors.index.json'));
    expect(viaIndex.tensors.length).toBe(3);
  });

  it('a folder of files without an index', async () => {
    const folder = path.join(dir, 'plain');
    mkdirSync(folder, { recursive: true });
    writeFileSync(path.join(folder, 'x.safetensors'), safetensorsImage({ x: { dtype: 'I8', shape: [1], bytes: new Uint8Array([1]) } }));
    writeFileSync(path.join(folder, 'y.safetensors'), safetensorsImage({ y: { dtype: 'I8', shape: [2], bytes: new Uint8Array([1, 2]) } }));
    const got = await native().describeTensors(folder);
    expect(got.tensors.map((t) => t.name).sort()).toEqual(['x', 'y']);
  });

  it('the fixtures\' sharded transformer folder', async () => {
    const folder = path.join(import.meta.dirname, 'fixtures/wan-tiny/ti2v-5b-tiny/transformer');
    const got = await native().describeTensors(folder);
    expect(got.tensors.length).toBeGreaterThan(10);
    const files = new Set(got.tensors.map((t) => path.basename(t.file)));
    expect(files).toEqual(new Set(['diffusion_pytorch_model-00001-of-00002.safetensors', 'diffusion_pytorch_model-00002-of-00002.safetensors']));
  });

  // Hostile index files: each is ERR_WAN_BAD_CHECKPOINT naming the index file and the tensor.
  const escapes: Array<[string, string]> = [
    ['parent folder', '../outside.safetensors'],
    ['absolute path', '/etc/passwd'],
    ['sub folder', 'sub/model.safetensors'],
    ['dot-dot', '..'],
  ];
  for (const [label, shard] of escapes) {
    it(`index.json whose shard name escapes the folder (${label}: ${shard})`, async () => {
      writeFileSync(path.join(dir, 'outside.safetensors'), safetensorsImage({ 'a.weight': { dtype: 'U8', shape: [1], bytes: new Uint8Array([1]) } }));
      const folder = shardedFolder(`escape-${label.replace(/ /g, '-')}`, { ...goodMap, 'a.weight': shard });
      const err = await native().describeTensors(folder).then(() => undefined, (e) => e);
      expect(err?.code).toBe('ERR_WAN_BAD_CHECKPOINT');
      expect(err.message).toContain(path.join(folder, 'model.safetensors.index.json'));
      expect(err.message).toContain("'a.weight'");
      expect(err.message).toContain('not a plain file name inside the folder');
    });
  }

  it('index.json whose shard name is not a string', async () => {
    const folder = shardedFolder('non-string-shard', { ...goodMap, 'a.weight': 5 as unknown as string });
    const err = await native().describeTensors(folder).then(() => undefined, (e) => e);
    expect(err?.code).toBe('ERR_WAN_BAD_CHECKPOINT');
    expect(err.message).toBe(`${path.join(folder, 'model.safetensors.index.json')}: weight_map entry for 'a.weight' is not a file name`);
  });

  it('a folder with two index files', async () => {
    const folder = shardedFolder('two-indexes', goodMap);
    writeFileSync(path.join(folder, 'other.safetensors.index.json'), JSON.stringify({ weight_map: goodMap }));
    await expect(native().describeTensors(folder)).rejects.toMatchObject({ code: 'ERR_WAN_BAD_CHECKPOINT', message: `${folder} holds several *.safetensors.index.json files; expected one` });
  });

  it('index.json naming a missing shard', async () => {
    const folder = shardedFolder('missing-shard', { ...goodMap, 'b.weight': 'model-00003-of-00002.safetensors' });
    const err = await native().describeTensors(folder).then(() => undefined, (e) => e);
    expect(err?.code).toBe('ERR_WAN_BAD_CHECKPOINT');
    expect(err.message).toContain('model-00003-of-00002.safetensors');
    expect(err.message).toContain("'b.weight'");
    expect(err.message).toContain('missing');
  });

  it('index.json listing a tensor its shard does not hold', async () => {
    const folder = shardedFolder('wrong-shard', { ...goodMap, 'b.weight': 'model-00001-of-00002.safetensors' });
    const err = await native().describeTensors(folder).then(() => undefined, (e) => e);
    expect(err?.code).toBe('ERR_WAN_BAD_CHECKPOINT');
    expect(err.message).toContain("'b.weight'");
  });

  it('index.json without weight_map, and a tensor held by two shards', async () => {
    const folder = shardedFolder('no-map', goodMap);
    writeFileSync(path.join(folder, 'model.safetensors.index.json'), JSON.stringify({ metadata: {} }));
    await expect(native().describeTensors(folder)).rejects.toMatchObject({ code: 'ERR_WAN_BAD_CHECKPOINT', message: expect.stringContaining("'weight_map'") });
    const twice = shardedFolder('twice', goodMap);
    writeSafetensors(path.join(twice, 'model-00002-of-00002.safetensors'), {
      'b.weight': { dtype: 'BF16', shape: [4, 4], bytes: new Uint8Array(32) },
      'a.bias': { dtype: 'F32', shape: [2], bytes: bytesOf(new Float32Array(2)) },
    });
    await expect(native().describeTensors(twice)).rejects.toMatchObject({ code: 'ERR_WAN_BAD_CHECKPOINT', message: expect.stringMatching(/'a\.bias' is in both/) });
  });

  it('a folder with no safetensors file, and a missing path', async () => {
    const empty = path.join(dir, 'empty-folder');
    mkdirSync(empty, { recursive: true });
    await expect(native().describeTensors(empty)).rejects.toMatchObject({ code: 'ERR_WAN_BAD_CHECKPOINT', message: expect.stringContaining(empty) });
    const missing = path.join(dir, 'nope.safetensors');
    await expect(native().readSafetensors(missing)).rejects.toMatchObject({ code: 'ERR_WAN_BAD_CHECKPOINT', message: expect.stringContaining(missing) });
  });
});
