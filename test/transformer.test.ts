import { cp, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';

import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import type { NativeTransformer, TensorData } from '../binding.js';
import { readManifest } from '../lib/fixtures.js';
import { native } from '../lib/native.js';
import { float32Tensor, maxRelError, numel } from '../lib/tensor.js';
import { FIXTURES, fixtureCase } from './helpers/fixtures.js';
import { writeTensorData } from './helpers/safetensors-writer.js';

const cases = (await readManifest(FIXTURES)).filter((e) => e.kind === 'transformer_forward');

async function expectCode(p: Promise<unknown>, code: string, text?: string | RegExp): Promise<Error> {
  const err = (await p.then(
    () => null,
    (e) => e,
  )) as Error & { code?: string };
  expect(err, `expected rejection with ${code}`).toBeInstanceOf(Error);
  expect(err.code).toBe(code);
  if (text) expect(err.message).toMatch(text);
  return err;
}

describe('WanTransformer parity with the reference (CPU, float32)', () => {
  it('covers every transformer_forward case of the three families', () => {
    expect(cases.map((c) => `${c.family}/${c.case}`).sort()).toEqual([
      'i2v-a14b-tiny/transformer_forward',
      't2v-a14b-tiny/transformer_forward',
      'ti2v-5b-tiny/transformer_forward',
      'ti2v-5b-tiny/transformer_forward_expanded_timesteps',
    ]);
  });

  for (const entry of cases) {
    it(`${entry.family}/${entry.case}: output and intermediates of every expert`, async () => {
      const c = await fixtureCase(entry.family, entry.case);
      const tol = c.json.tolerance.fp32 as number;
      const folders = c.json.params.model_folders as string[];
      const inputs = {
        hiddenStates: c.input('hidden_states'),
        timestep: c.input('timestep'),
        encoderHiddenStates: c.input('encoder_hidden_states'),
      };
      const errors: Record<string, number> = {};
      let compared = 0;
      for (const [i, folder] of folders.entries()) {
        const suffix = i === 0 ? '' : `_${i + 1}`;
        const model = await native().loadTransformer(path.join(c.modelDir, folder), { device: 'cpu', dtype: 'float32' });
        const { output, debug } = await model.forward(inputs, { debug: true });
        model.dispose();
        errors[`output${suffix}`] = maxRelError(output, c.output(`output${suffix}`));
        for (const [name, tensor] of Object.entries(debug ?? {})) {
          const key = `${name}${suffix}`;
          if (!c.json.intermediates?.[key]) continue;
          errors[key] = maxRelError(tensor, c.intermediate(key));
          compared++;
        }
      }
      console.log(`${entry.family}/${entry.case} max rel errors (fp32 tol ${tol}):`, JSON.stringify(errors));
      expect(compared).toBe(Object.keys(c.json.intermediates ?? {}).length);
      for (const [name, err] of Object.entries(errors)) expect(err, name).toBeLessThanOrEqual(tol);
    });
  }

  it('float16 on the CPU is ERR_WAN_BAD_ARGUMENT on libtorch 1.x (no half matmul there) and runs on 2.x', async () => {
    const c = await fixtureCase('t2v-a14b-tiny', 'transformer_forward');
    const load = native().loadTransformer(path.join(c.modelDir, 'transformer'), { dtype: 'float16' });
    if (native().runtimeInfo().libtorchVersion.startsWith('1.')) {
      await expectCode(load, 'ERR_WAN_BAD_ARGUMENT', /'float16'.*'bfloat16' or 'float32'/);
    } else {
      const model = await load;
      const { output } = await model.forward({ hiddenStates: c.input('hidden_states'), timestep: c.input('timestep'), encoderHiddenStates: c.input('encoder_hidden_states') });
      model.dispose();
      expect(maxRelError(output, c.output('output'))).toBeLessThan(5e-2);
    }
  });

  it.each(['bfloat16'])('%s weights (norms, modulation and time embedder in float32) stay within the half-precision bound', async (dtype) => {
    for (const [family, caseName] of [
      ['t2v-a14b-tiny', 'transformer_forward'],
      ['ti2v-5b-tiny', 'transformer_forward_expanded_timesteps'],
    ]) {
      const c = await fixtureCase(family, caseName);
      const model = await native().loadTransformer(path.join(c.modelDir, 'transformer'), { dtype });
      expect(model.info().dtype).toBe(dtype);
      const { output } = await model.forward({ hiddenStates: c.input('hidden_states'), timestep: c.input('timestep'), encoderHiddenStates: c.input('encoder_hidden_states') });
      model.dispose();
      const err = maxRelError(output, c.output('output'));
      console.log(`${family}/${caseName} ${dtype} max rel error: ${err}`);
      expect(err).toBeLessThan(5e-2);
      expect(err).toBeGreaterThan(0); // really ran in half precision
    }
  });

  it('a scalar timestep [1] equals the same value repeated per batch element', async () => {
    const c = await fixtureCase('t2v-a14b-tiny', 'transformer_forward');
    const model = await native().loadTransformer(path.join(c.modelDir, 'transformer'));
    const hiddenStates = c.input('hidden_states');
    const encoderHiddenStates = c.input('encoder_hidden_states');
    const t = { dtype: 'int64', shape: [1], data: BigInt64Array.from([937n]) } as TensorData;
    const tb = { dtype: 'int64', shape: [2], data: BigInt64Array.from([937n, 937n]) } as TensorData;
    const a = await model.forward({ hiddenStates, timestep: t, encoderHiddenStates });
    const b = await model.forward({ hiddenStates, timestep: tb, encoderHiddenStates });
    expect(maxRelError(a.output, b.output)).toBe(0);
    model.dispose();
  });
});

describe('NativeTransformer API', () => {
  let model: NativeTransformer;
  let inputs: { hiddenStates: TensorData; timestep: TensorData; encoderHiddenStates: TensorData };
  beforeAll(async () => {
    const c = await fixtureCase('t2v-a14b-tiny', 'transformer_forward');
    model = await native().loadTransformer(path.join(c.modelDir, 'transformer'), { device: 'cpu', dtype: 'float32' });
    inputs = { hiddenStates: c.input('hidden_states'), timestep: c.input('timestep'), encoderHiddenStates: c.input('encoder_hidden_states') };
  });
  afterAll(() => model.dispose());

  it('info() reports the config and parameter count', () => {
    const info = model.info();
    expect(info).toMatchObject({ dim: 40, numLayers: 2, numHeads: 2, inChannels: 16, outChannels: 16, dtype: 'float32', device: 'cpu' });
    // patch 16*4*40+40, time 256*40+40 + 40*40+40, proj 40*240+240, text 32*40+40 + 40*40+40,
    // per block 2*(4*(40*40+40)+2*40) + 2*40 + (40*80+80) + (80*40+40) + 6*40, proj_out 40*64+64, table 2*40
    const block = 2 * (4 * (40 * 40 + 40) + 80) + 80 + (40 * 80 + 80) + (80 * 40 + 40) + 240;
    const expected = 16 * 4 * 40 + 40 + (256 * 40 + 40) + (40 * 40 + 40) + (40 * 240 + 240) + (32 * 40 + 40) + (40 * 40 + 40) + 2 * block + (40 * 64 + 64) + 80;
    expect(info.parameterCount).toBe(expected);
  });

  it('rejects inputs of the wrong shape with ERR_WAN_BAD_ARGUMENT naming the expected shape', async () => {
    const h = inputs.hiddenStates;
    await expectCode(model.forward({ ...inputs, hiddenStates: float32Tensor([2, 15, 3, 4, 6]) }), 'ERR_WAN_BAD_ARGUMENT', /\[B, 16, F, H, W\]/);
    await expectCode(model.forward({ ...inputs, hiddenStates: float32Tensor([2, 16, 3, 5, 6]) }), 'ERR_WAN_BAD_ARGUMENT', /multiples of the patch size \[1, 2, 2\]/);
    await expectCode(model.forward({ ...inputs, encoderHiddenStates: float32Tensor([2, 512, 31]) }), 'ERR_WAN_BAD_ARGUMENT', /\[2, L, 32\]/);
    await expectCode(model.forward({ ...inputs, encoderHiddenStates: float32Tensor([1, 512, 32]) }), 'ERR_WAN_BAD_ARGUMENT', /\[2, L, 32\]/);
    await expectCode(model.forward({ ...inputs, timestep: float32Tensor([3]) }), 'ERR_WAN_BAD_ARGUMENT', /per-token \[2, 18\]/);
    await expectCode(model.forward({ ...inputs, timestep: float32Tensor([2, 17]) }), 'ERR_WAN_BAD_ARGUMENT', /per-token \[2, 18\]/);
    expect(h.shape).toEqual([2, 16, 3, 4, 6]);
    // Still usable after the errors.
    const { output } = await model.forward(inputs);
    expect(output.shape).toEqual([2, 16, 3, 4, 6]);
  });

  it('a cancelled token aborts the forward with ERR_WAN_ABORTED', async () => {
    const token = new (native().CancelToken)();
    token.cancel();
    await expectCode(model.forward(inputs, {}, token), 'ERR_WAN_ABORTED');
  });

  it('a second call while one runs is ERR_WAN_BUSY; calls after dispose are ERR_WAN_DISPOSED', async () => {
    const c = await fixtureCase('t2v-a14b-tiny', 'transformer_forward');
    const other = await native().loadTransformer(path.join(c.modelDir, 'transformer_2'));
    const running = other.forward(inputs);
    let busy: (Error & { code?: string }) | null = null;
    try {
      await other.forward(inputs);
    } catch (e) {
      busy = e as Error;
    }
    expect(busy?.code).toBe('ERR_WAN_BUSY');
    await running;
    other.dispose();
    let disposed: (Error & { code?: string }) | null = null;
    try {
      await other.forward(inputs);
    } catch (e) {
      disposed = e as Error;
    }
    expect(disposed?.code).toBe('ERR_WAN_DISPOSED');
    expect(() => other.info()).toThrow(/disposed/);
  });
});

describe('loading checkpoints', () => {
  let tmp: string;
  let tensors: Record<string, TensorData>;
  let source: string;
  beforeAll(async () => {
    tmp = await mkdtemp(path.join(tmpdir(), 'wan-dit-'));
    source = path.join(FIXTURES, 't2v-a14b-tiny', 'transformer');
    tensors = {};
    for (const shard of ['diffusion_pytorch_model-00001-of-00002.safetensors', 'diffusion_pytorch_model-00002-of-00002.safetensors']) {
      Object.assign(tensors, (await native().readSafetensors(path.join(source, shard))).tensors);
    }
  });
  afterAll(() => rm(tmp, { recursive: true, force: true }));

  // A one-file checkpoint folder holding `modified` (config.json copied from the fixture).
  async function checkpoint(name: string, modified: Record<string, TensorData>): Promise<string> {
    const dir = path.join(tmp, name);
    await cp(path.join(source, 'config.json'), path.join(dir, 'config.json'), { recursive: true });
    writeTensorData(path.join(dir, 'diffusion_pytorch_model.safetensors'), modified);
    return dir;
  }
  const without = (name: string) => Object.fromEntries(Object.entries(tensors).filter(([n]) => n !== name));

  it('an unmodified rewrite loads and gives the reference output', async () => {
    const c = await fixtureCase('t2v-a14b-tiny', 'transformer_forward');
    const model = await native().loadTransformer(await checkpoint('same', tensors));
    const { output } = await model.forward({ hiddenStates: c.input('hidden_states'), timestep: c.input('timestep'), encoderHiddenStates: c.input('encoder_hidden_states') });
    expect(maxRelError(output, c.output('output'))).toBeLessThanOrEqual(c.json.tolerance.fp32);
    model.dispose();
  });

  it('a renamed tensor is ERR_WAN_BAD_CHECKPOINT naming it', async () => {
    const t = { ...without('blocks.0.attn1.to_q.weight'), 'blocks.0.attn1.q.weight': tensors['blocks.0.attn1.to_q.weight'] };
    await expectCode(native().loadTransformer(await checkpoint('renamed', t)), 'ERR_WAN_BAD_CHECKPOINT', /'blocks\.0\.attn1\.to_q\.weight'/);
  });

  it('a missing tensor is ERR_WAN_BAD_CHECKPOINT naming it', async () => {
    await expectCode(native().loadTransformer(await checkpoint('missing', without('proj_out.bias'))), 'ERR_WAN_BAD_CHECKPOINT', /missing tensor 'proj_out\.bias'/);
  });

  it('an extra tensor is ERR_WAN_BAD_CHECKPOINT naming it', async () => {
    const t = { ...tensors, 'blocks.1.attn2.extra.weight': float32Tensor([4]) };
    await expectCode(native().loadTransformer(await checkpoint('extra', t)), 'ERR_WAN_BAD_CHECKPOINT', /unexpected tensor 'blocks\.1\.attn2\.extra\.weight'/);
  });

  it('a mis-shaped tensor is ERR_WAN_BAD_CHECKPOINT naming it and both shapes', async () => {
    const w = tensors['blocks.1.ffn.net.2.weight'];
    const t = { ...tensors, 'blocks.1.ffn.net.2.weight': { ...w, shape: [w.shape[1], w.shape[0]] } };
    await expectCode(native().loadTransformer(await checkpoint('misshaped', t)), 'ERR_WAN_BAD_CHECKPOINT', /'blocks\.1\.ffn\.net\.2\.weight' has shape \[80, 40\], expected \[40, 80\]/);
  });

  it('a missing config.json or bad dtype option is a typed error', async () => {
    await expectCode(native().loadTransformer(path.join(tmp, 'nowhere')), 'ERR_WAN_BAD_CHECKPOINT', /config\.json/);
    await expectCode(native().loadTransformer(source, { dtype: 'float8' }), 'ERR_WAN_BAD_ARGUMENT', /'dtype'/);
  });
});

describe('attention', () => {
  // A seeded uniform generator (the values only need to be reproducible).
  function random(shape: number[], seed: number): TensorData {
    let s = seed >>> 0;
    const data = new Float32Array(numel(shape));
    for (let i = 0; i < data.length; i++) {
      s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
      data[i] = (s / 2 ** 32) * 4 - 2;
    }
    return { dtype: 'float32', shape, data };
  }
  // softmax(q k^T / sqrt(D)) v in float64.
  function reference(q: TensorData, k: TensorData, v: TensorData): TensorData {
    const [b, h, sq, d] = q.shape;
    const sk = k.shape[2];
    const out = new Float64Array(b * h * sq * d);
    const scale = 1 / Math.sqrt(d);
    for (let bh = 0; bh < b * h; bh++) {
      for (let i = 0; i < sq; i++) {
        const scores = new Float64Array(sk);
        let max = -Infinity;
        for (let j = 0; j < sk; j++) {
          let dot = 0;
          for (let x = 0; x < d; x++) dot += q.data[(bh * sq + i) * d + x] as number * (k.data[(bh * sk + j) * d + x] as number);
          scores[j] = dot * scale;
          max = Math.max(max, scores[j]);
        }
        let sum = 0;
        for (let j = 0; j < sk; j++) sum += scores[j] = Math.exp(scores[j] - max);
        for (let j = 0; j < sk; j++)
          for (let x = 0; x < d; x++) out[(bh * sq + i) * d + x] += (scores[j] / sum) * (v.data[(bh * sk + j) * d + x] as number);
      }
    }
    return { dtype: 'float64', shape: [b, h, sq, d], data: out };
  }

  it('the chunked fallback equals unchunked attention and the float64 math', () => {
    const q = random([2, 3, 37, 16], 1);
    const k = random([2, 3, 29, 16], 2);
    const v = random([2, 3, 29, 16], 3);
    const ref = reference(q, k, v);
    for (const chunk of [1, 5, 36, 37, 0]) {
      const r = native()._testAttention(q, k, v, chunk);
      expect(r.chunked.shape).toEqual([2, 3, 37, 16]);
      expect(maxRelError(r.chunked, r.unchunked), `chunk ${chunk}`).toBeLessThan(1e-6);
      expect(maxRelError(r.chunked, ref), `chunk ${chunk}`).toBeLessThan(1e-5);
      expect(maxRelError(r.dispatched, ref)).toBeLessThan(1e-5);
    }
  });

  it('a libtorch failure inside the synchronous hook is a coded error, not an abort', () => {
    // 2^23 queries and keys in one block: 2^46 float scores (256 TiB), which libtorch cannot allocate.
    const n = 2 ** 23;
    const t = { dtype: 'float32' as const, shape: [1, 1, n, 1], data: new Float32Array(n) };
    expect(() => native()._testAttention(t, t, t, n)).toThrow(expect.objectContaining({ code: 'ERR_WAN_OOM' }));
    const small = random([1, 1, 3, 4], 4);
    expect(native()._testAttention(small, small, small, 1).chunked.shape).toEqual([1, 1, 3, 4]);
  });
});

describe('SDPA backend order (WAN_SDPA_ORDER, wan_bench --sdpa-order)', () => {
  const names = ['cudnn_attention', 'efficient_attention', 'flash_attention', 'math'];

  it("puts the asked-for backends first, keeps them over libtorch's own first CUDA choice, and '' goes back to libtorch's order", () => {
    const n = native();
    const [major, minor] = n.runtimeInfo().libtorchVersion.split('.').map(Number);
    const own = n._testAttentionOrder();
    if (major < 2 || (major === 2 && minor < 6)) {
      // No order to set (1.13: no SDPA at all): asking changes nothing, and a bad name is still an error.
      expect(own).toEqual([]);
      expect(n._testAttentionOrder('cudnn,flash')).toEqual([]);
    } else {
      expect([...own].sort()).toEqual(names);
      const rest = (first: string[], order: string[]) => [...first, ...order.filter((b) => !first.includes(b))];
      expect(n._testAttentionOrder('efficient,math')).toEqual(rest(['efficient_attention', 'math'], own));
      expect(n._testAttentionOrder('cudnn_attention,cudnn,flash')).toEqual(rest(['cudnn_attention', 'flash_attention'], own));
      // A CUDA libtorch >= 2.10 puts cuDNN first on its first CUDA SDPA call over whatever was set:
      // ours goes back on top, the rest now in libtorch's new order.
      const cudaDefault = ['cudnn_attention', 'math', 'flash_attention', 'efficient_attention'];
      expect(n._testAttentionOrder('efficient', cudaDefault.join(','))).toEqual(rest(['efficient_attention'], cudaDefault));
      // Repeated names count once (libtorch's list holds each backend once).
      expect(n._testAttentionOrder('efficient,efficient', 'cudnn,cudnn,math')).toEqual(rest(['efficient_attention'], rest(['cudnn_attention', 'math'], cudaDefault)));
      n._testAttentionOrder('efficient', cudaDefault.join(','));
      expect(n._testAttentionOrder('')).toEqual(cudaDefault);
      expect(n._testAttentionOrder('', own.join(','))).toEqual(own);
    }
    let err: (Error & { code?: string }) | undefined;
    try {
      n._testAttentionOrder('flash,fastest');
    } catch (e) {
      err = e as Error;
    }
    expect(err?.code).toBe('ERR_WAN_BAD_ARGUMENT');
    expect(err?.message).toContain("unknown attention backend 'fastest' (math, flash, efficient or cudnn)");
    expect(n._testAttentionOrder()).toEqual(own);
  });
});
