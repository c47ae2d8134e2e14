import { copyFileSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';

import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import type { NativeTextEncoder, TensorData } from '../binding.js';
import { native } from '../lib/native.js';
import { headRows, int64Tensor, maxRelError, toFloat64 } from '../lib/tensor.js';
import { FIXTURES, fixtureCase } from './helpers/fixtures.js';

const TEXT_ENCODER_DIR = path.join(FIXTURES, 't2v-a14b-tiny', 'text_encoder');

// A safetensors file from named float32 tensors (for broken-checkpoint cases).
function writeSafetensors(file: string, tensors: Record<string, { shape: number[]; data: Float32Array }>) {
  const header: Record<string, unknown> = {};
  let offset = 0;
  for (const [name, t] of Object.entries(tensors)) {
    header[name] = { dtype: 'F32', shape: t.shape, data_offsets: [offset, offset + t.data.byteLength] };
    offset += t.data.byteLength;
  }
  let json = JSON.stringify(header);
  json += ' '.repeat((8 - (json.length % 8)) % 8);
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(BigInt(json.length));
  const body = Buffer.concat(Object.values(tensors).map((t) => Buffer.from(t.data.buffer, t.data.byteOffset, t.data.byteLength)));
  writeFileSync(file, Buffer.concat([len, Buffer.from(json), body]));
}

let fixtureWeights: Record<string, { shape: number[]; data: Float32Array }>;
const tmpDirs: string[] = [];

// A text_encoder folder with the fixture's config and weights changed by `edit`.
function editedCheckpoint(edit: (w: Record<string, { shape: number[]; data: Float32Array }>) => void): string {
  const dir = mkdtempSync(path.join(tmpdir(), 'wan-te-'));
  tmpDirs.push(dir);
  copyFileSync(path.join(TEXT_ENCODER_DIR, 'config.json'), path.join(dir, 'config.json'));
  const weights = { ...fixtureWeights };
  edit(weights);
  writeSafetensors(path.join(dir, 'model.safetensors'), weights);
  return dir;
}

beforeAll(async () => {
  const { tensors } = await native().readSafetensors(path.join(TEXT_ENCODER_DIR, 'model.safetensors'));
  fixtureWeights = {};
  for (const [name, t] of Object.entries(tensors)) fixtureWeights[name] = { shape: t.shape, data: Float32Array.from(t.data as Float32Array) };
});

afterAll(() => {
  for (const d of tmpDirs) rmSync(d, { recursive: true, force: true });
});

async function expectRejects(p: Promise<unknown>, code: string, ...fragments: string[]) {
  const err = await p.then(
    () => undefined,
    (e: unknown) => e as Error & { code?: string },
  );
  expect(err, `expected ${code}`).toBeInstanceOf(Error);
  expect(err!.code).toBe(code);
  for (const f of fragments) expect(err!.message).toContain(f);
}

describe('UMT5 text encoder parity (float32, CPU)', () => {
  let encoder: NativeTextEncoder;
  beforeAll(async () => {
    encoder = await native().loadTextEncoder(TEXT_ENCODER_DIR, { device: 'cpu', dtype: 'float32' });
  });

  it('text_encoder case: last_hidden_state at all 512 positions and the post-processed head', async () => {
    const c = await fixtureCase('t2v-a14b-tiny', 'text_encoder');
    const tol = c.json.tolerance.fp32 as number;
    const out = await encoder.encode(c.input('input_ids'), c.input('attention_mask'));
    expect(out.lastHiddenState.shape).toEqual([2, 512, 32]);
    // padded to max_sequence_length: headRows would zero-fill a shorter tensor and hide it
    expect(out.promptEmbeds.shape).toEqual([2, 512, 32]);
    const errHidden = maxRelError(out.lastHiddenState, c.output('last_hidden_state'));
    const errHead = maxRelError(headRows(out.promptEmbeds, 64), c.output('prompt_embeds_head'));
    console.log(`text_encoder parity: last_hidden_state ${errHidden.toExponential(2)}, prompt_embeds_head ${errHead.toExponential(2)} (fp32 tol ${tol})`);
    expect(errHidden).toBeLessThanOrEqual(tol);
    expect(errHead).toBeLessThanOrEqual(tol);
    // Rows at and past each real length are exactly zero, the others untouched.
    const seqLens = c.json.params.seq_lens as number[];
    const embeds = toFloat64(out.promptEmbeds);
    const hidden = toFloat64(out.lastHiddenState);
    for (let b = 0; b < 2; b++) {
      for (let s = 0; s < 512; s++) {
        const row = embeds.subarray((b * 512 + s) * 32, (b * 512 + s + 1) * 32);
        if (s >= seqLens[b]) expect(row.every((v) => v === 0)).toBe(true);
        else expect(Array.from(row)).toEqual(Array.from(hidden.subarray((b * 512 + s) * 32, (b * 512 + s + 1) * 32)));
      }
    }
  });

  for (const [family, caseName] of [
    ['t2v-a14b-tiny', 'pipeline'],
    ['i2v-a14b-tiny', 'pipeline'],
    ['ti2v-5b-tiny', 'pipeline_t2v'],
    ['ti2v-5b-tiny', 'pipeline_i2v'],
  ]) {
    it(`${family}/${caseName}: prompt and negative prompt embeddings from their ids`, async () => {
      const c = await fixtureCase(family, caseName);
      // The family's own text encoder (identical weights in the three families, as in the real repos).
      const own = await native().loadTextEncoder(path.join(c.modelDir, 'text_encoder'));
      // The embeddings are a text-encoder output: held to the text encoder case's bound.
      const tol = (await fixtureCase('t2v-a14b-tiny', 'text_encoder')).json.tolerance.fp32 as number;
      for (const which of ['prompt', 'negative_prompt']) {
        const out = await own.encode(c.input(`${which}_input_ids`), c.input(`${which}_attention_mask`));
        const ref = c.output(`${which}_embeds_head`);
        // [1, 512, D]: with fewer rows, headRows would zero-fill the head and the tail check below be vacuous.
        expect(out.promptEmbeds.shape).toEqual([1, 512, 32]);
        const err = maxRelError(headRows(out.promptEmbeds, 64), ref);
        console.log(`${family}/${caseName} ${which}_embeds_head: ${err.toExponential(2)}`);
        expect(err).toBeLessThanOrEqual(tol);
        const tail = toFloat64(out.promptEmbeds).subarray(64 * 32);
        expect(tail.every((v) => v === 0)).toBe(true);
      }
      own.dispose();
    });
  }

  it('info() describes the model', () => {
    const info = encoder.info();
    expect(info).toMatchObject({ dModel: 32, numLayers: 2, dtype: 'float32', device: 'cpu' });
    const params = Object.values(fixtureWeights).reduce((n, t) => n + t.data.length, 0);
    expect(info.parameterCount).toBe(params);
  });

  it('rejects token ids outside the vocabulary, mismatched masks and masks without tokens', async () => {
    const ids = int64Tensor([1, 4], [5, 7, 1, 0]);
    const mask = int64Tensor([1, 4], [1, 1, 1, 0]);
    await expectRejects(encoder.encode(int64Tensor([1, 4], [5, 256, 1, 0]), mask), 'ERR_WAN_BAD_ARGUMENT', '256', 'vocabulary');
    await expectRejects(encoder.encode(int64Tensor([1, 4], [5, -1, 1, 0]), mask), 'ERR_WAN_BAD_ARGUMENT', '-1');
    await expectRejects(encoder.encode(ids, int64Tensor([1, 3], [1, 1, 1])), 'ERR_WAN_BAD_ARGUMENT', 'attentionMask');
    await expectRejects(encoder.encode(ids, int64Tensor([1, 4], [0, 0, 0, 0])), 'ERR_WAN_BAD_ARGUMENT', 'attentionMask');
    const floats: TensorData = { dtype: 'float32', shape: [1, 4], data: new Float32Array(4) };
    await expectRejects(encoder.encode(floats, mask), 'ERR_WAN_BAD_ARGUMENT', 'inputIds');
    // Still usable after errors.
    const ok = await encoder.encode(ids, mask);
    expect(ok.lastHiddenState.shape).toEqual([1, 4, 32]);
  });

  it('an aborted call rejects with ERR_WAN_ABORTED and leaves the encoder usable', async () => {
    const c = await fixtureCase('t2v-a14b-tiny', 'text_encoder');
    const token = new (native().CancelToken)();
    token.cancel();
    await expectRejects(encoder.encode(c.input('input_ids'), c.input('attention_mask'), token), 'ERR_WAN_ABORTED');
    const out = await encoder.encode(c.input('input_ids'), c.input('attention_mask'));
    expect(maxRelError(out.lastHiddenState, c.output('last_hidden_state'))).toBeLessThanOrEqual(c.json.tolerance.fp32);
  });

  it('one call at a time; disposed encoders refuse calls', async () => {
    const c = await fixtureCase('t2v-a14b-tiny', 'text_encoder');
    const other = await native().loadTextEncoder(TEXT_ENCODER_DIR);
    const first = other.encode(c.input('input_ids'), c.input('attention_mask'));
    await expectRejects(Promise.resolve().then(() => other.encode(c.input('input_ids'), c.input('attention_mask'))), 'ERR_WAN_BUSY');
    await first;
    other.dispose();
    await expectRejects(Promise.resolve().then(() => other.encode(c.input('input_ids'), c.input('attention_mask'))), 'ERR_WAN_DISPOSED');
  });
});

describe('UMT5 text encoder in half precision', () => {
  // libtorch 1.13 has no float16 matrix products on the CPU: loading says so instead of failing later.
  const cpuHalf = !native().runtimeInfo().libtorchVersion.startsWith('1.');
  if (!cpuHalf) {
    it('float16 on the CPU is refused at load with this libtorch', async () => {
      await expectRejects(native().loadTextEncoder(TEXT_ENCODER_DIR, { dtype: 'float16' }), 'ERR_WAN_BAD_ARGUMENT', 'float16');
    });
  }
  for (const dtype of cpuHalf ? ['bfloat16', 'float16'] : ['bfloat16']) {
    it(`${dtype} weights stay close to the float64 reference`, async () => {
      const c = await fixtureCase('t2v-a14b-tiny', 'text_encoder');
      const enc = await native().loadTextEncoder(TEXT_ENCODER_DIR, { dtype });
      expect(enc.info().dtype).toBe(dtype);
      const out = await enc.encode(c.input('input_ids'), c.input('attention_mask'));
      const err = maxRelError(headRows(out.promptEmbeds, 64), c.output('prompt_embeds_head'));
      console.log(`${dtype} prompt_embeds_head: ${err.toExponential(2)}`);
      // The fixture's bf16 note: bf16 weights and activations need ~3e-2.
      expect(err).toBeLessThanOrEqual(3e-2);
      enc.dispose();
    });
  }
});

describe('UMT5 text encoder checkpoints', () => {
  const wo = 'encoder.block.1.layer.1.DenseReluDense.wo.weight';
  const bias = 'encoder.block.0.layer.0.SelfAttention.relative_attention_bias.weight';

  it('a missing tensor is ERR_WAN_BAD_CHECKPOINT naming it', async () => {
    const dir = editedCheckpoint((w) => delete w[wo]);
    await expectRejects(native().loadTextEncoder(dir), 'ERR_WAN_BAD_CHECKPOINT', wo);
  });

  it('a mis-shaped tensor is ERR_WAN_BAD_CHECKPOINT naming it and both shapes', async () => {
    const dir = editedCheckpoint((w) => {
      w[bias] = { shape: [16, 8], data: w[bias].data };
    });
    await expectRejects(native().loadTextEncoder(dir), 'ERR_WAN_BAD_CHECKPOINT', bias, '[16, 8]', '[32, 4]');
  });

  it('an unexpected tensor is ERR_WAN_BAD_CHECKPOINT naming it', async () => {
    const dir = editedCheckpoint((w) => {
      w['encoder.block.2.layer.0.layer_norm.weight'] = { shape: [32], data: new Float32Array(32) };
    });
    await expectRejects(native().loadTextEncoder(dir), 'ERR_WAN_BAD_CHECKPOINT', 'encoder.block.2.layer.0.layer_norm.weight');
  });

  it('a missing folder or config is ERR_WAN_BAD_CHECKPOINT', async () => {
    await expectRejects(native().loadTextEncoder(path.join(tmpdir(), 'no-such-wan-text-encoder')), 'ERR_WAN_BAD_CHECKPOINT', 'no-such-wan-text-encoder');
  });

  it('accepts the embedding as encoder.embed_tokens.weight, alone or beside shared.weight', async () => {
    const c = await fixtureCase('t2v-a14b-tiny', 'text_encoder');
    const ref = await (await native().loadTextEncoder(TEXT_ENCODER_DIR)).encode(c.input('input_ids'), c.input('attention_mask'));
    const onlyEmbed = editedCheckpoint((w) => {
      w['encoder.embed_tokens.weight'] = w['shared.weight'];
      delete w['shared.weight'];
    });
    const both = editedCheckpoint((w) => {
      w['encoder.embed_tokens.weight'] = w['shared.weight'];
    });
    for (const dir of [onlyEmbed, both]) {
      const enc = await native().loadTextEncoder(dir);
      const out = await enc.encode(c.input('input_ids'), c.input('attention_mask'));
      expect(maxRelError(out.lastHiddenState, ref.lastHiddenState)).toBe(0);
    }
    // A tied copy of the wrong shape is still an error.
    const badTie = editedCheckpoint((w) => {
      w['encoder.embed_tokens.weight'] = { shape: [128, 64], data: w['shared.weight'].data };
    });
    await expectRejects(native().loadTextEncoder(badTie), 'ERR_WAN_BAD_CHECKPOINT', 'encoder.embed_tokens.weight');
  });

  it('rejects unknown devices and dtypes', async () => {
    await expectRejects(native().loadTextEncoder(TEXT_ENCODER_DIR, { dtype: 'int8' }), 'ERR_WAN_BAD_ARGUMENT', 'dtype');
    await expectRejects(native().loadTextEncoder(TEXT_ENCODER_DIR, { device: 'tpu' }), 'ERR_WAN_BAD_ARGUMENT', 'device');
  });
});
