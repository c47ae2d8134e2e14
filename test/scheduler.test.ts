import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';

import { describe, expect, it } from 'vitest';

import type { SchedulerRunOptions, TensorData } from '../binding.js';
import { native } from '../lib/native.js';
import { maxRelError, numel, toFloat64 } from '../lib/tensor.js';
import { FIXTURES, fixtureCase } from './helpers/fixtures.js';

const configPath = (family: string) => path.join(FIXTURES, family, 'scheduler', 'scheduler_config.json');

function asFloat64(t: TensorData): TensorData {
  return { dtype: 'float64', shape: t.shape, data: toFloat64(t) };
}

function timestepsOf(t: TensorData): number[] {
  expect(t.dtype).toBe('int64');
  return Array.from(t.data as BigInt64Array, (x) => Number(x));
}

function sigmasOf(t: TensorData): number[] {
  expect(t.dtype).toBe('float32');
  return Array.from(t.data as Float32Array);
}

function maxAbsDiff(a: number[], b: number[]): number {
  expect(a.length).toBe(b.length);
  return Math.max(...a.map((x, i) => Math.abs(x - b[i])));
}

// numpy.linspace(start, stop, n + 1)[:-1] in float64: element i = i * ((stop - start) / n) + start.
function linspaceWithoutLast(start: number, stop: number, n: number): number[] {
  const step = (stop - start) / n;
  return Array.from({ length: n }, (_, i) => i * step + start);
}

const shifted = (s: number[], shift: number) => s.map((v) => (shift * v) / (1 + (shift - 1) * v));

// The official Wan2.2 grid: linspace(float32(1 - 1/1000), 0, N+1)[:-1], shifted, int64(sigma*1000).
function officialGrid(steps: number, shift: number) {
  const sigma = shifted(linspaceWithoutLast(Math.fround(1 - 1 / 1000), 0, steps), shift);
  return { timesteps: sigma.map((v) => Math.trunc(v * 1000)), sigmas: [...sigma.map(Math.fround), 0] };
}

// The diffusers grid: linspace(1, 1/1000, N+1)[:-1], shifted, sigma[0] = 1 - 1e-6.
function diffusersGrid(steps: number, shift: number) {
  const sigma = shifted(linspaceWithoutLast(1, 1 / 1000, steps), shift);
  if (Math.abs(sigma[0] - 1) < 1e-6) sigma[0] -= 1e-6;
  return { timesteps: sigma.map((v) => Math.trunc(v * 1000)), sigmas: [...sigma.map(Math.fround), 0] };
}

interface UniPCVariant {
  solverOrder: number;
  bh2: boolean;
  lowerOrderFinal: boolean;
  disableCorrector: number[];
}

// UniPC (predict_x0, flow_prediction) written out in float64 from the algorithm: an independent
// check of the options the fixtures do not exercise. Returns every step's result, [N * n].
function uniPCFloat64(sigmas: number[], sample: Float64Array, v: Float64Array, o: UniPCVariant): Float64Array {
  const n = sample.length;
  const steps = sigmas.length - 1;
  const lambda = (s: number) => Math.log(1 - s) - Math.log(s);
  const combine = (terms: Array<[number, Float64Array]>) => {
    const r = new Float64Array(n);
    for (const [c, a] of terms) for (let j = 0; j < n; j++) r[j] += c * a[j];
    return r;
  };
  // One UniPC update from sigma s0 to sigma t of sample x, with x0 predictions m0 (at s0) and
  // m1 (one sigma earlier, at s1) when order 2, and the extra corrector term d1t when given.
  const update = (t: number, s0: number, s1: number, x: Float64Array, m0: Float64Array, m1: Float64Array | undefined, d1t?: Float64Array) => {
    const h = lambda(t) - lambda(s0);
    const hh = -h;
    const hPhi1 = Math.expm1(hh);
    const bH = o.bh2 ? hPhi1 : hh;
    const alphaT = 1 - t;
    const terms: Array<[number, Float64Array]> = [
      [t / s0, x],
      [-alphaT * hPhi1, m0],
    ];
    let rk = 0;
    let d1: Float64Array | undefined;
    if (m1) {
      rk = (lambda(s1) - lambda(s0)) / h;
      d1 = combine([
        [1 / rk, m1],
        [-1 / rk, m0],
      ]);
    }
    if (!d1t) {
      if (d1) terms.push([-alphaT * bH * 0.5, d1]);
    } else if (!d1) {
      terms.push([-alphaT * bH * 0.5, d1t]);
    } else {
      // rho solves [[1, 1], [rk, 1]] rho = [h_phi_1 / B(h), 2 h_phi_2 / B(h)].
      const phi1 = hPhi1 / hh - 1;
      const phi2 = phi1 / hh - 0.5;
      const b0 = phi1 / bH;
      const b1 = (2 * phi2) / bH;
      const rho1 = (b1 - rk * b0) / (1 - rk);
      terms.push([-alphaT * bH * (b0 - rho1), d1], [-alphaT * bH * rho1, d1t]);
    }
    return combine(terms);
  };
  const out = new Float64Array(steps * n);
  const x0s: Float64Array[] = [];
  let x = Float64Array.from(sample);
  let last: Float64Array | undefined;
  let warm = 0;
  let order = 0;
  for (let i = 0; i < steps; i++) {
    const x0 = combine([
      [1, x],
      [-sigmas[i], v.subarray(i * n, (i + 1) * n)],
    ]);
    if (i > 0 && last && !o.disableCorrector.includes(i - 1)) {
      const m0 = x0s[x0s.length - 1];
      const m1 = order === 2 ? x0s[x0s.length - 2] : undefined;
      const d1t = combine([
        [1, x0],
        [-1, m0],
      ]);
      x = update(sigmas[i], sigmas[i - 1], sigmas[i - 2], last, m0, m1, d1t);
    }
    x0s.push(x0);
    if (x0s.length > o.solverOrder) x0s.shift();
    order = Math.min(o.lowerOrderFinal ? Math.min(o.solverOrder, steps - i) : o.solverOrder, warm + 1);
    last = x;
    x = update(sigmas[i + 1], sigmas[i], sigmas[i - 1], x, x0s[x0s.length - 1], order === 2 ? x0s[x0s.length - 2] : undefined);
    warm = Math.min(warm + 1, o.solverOrder);
    out.set(x, i * n);
  }
  return out;
}

async function expectCode(run: () => Promise<unknown>, code: string, mentions: string) {
  // Option errors throw synchronously, run-time ones reject: both count.
  const err = await Promise.resolve()
    .then(run)
    .then(
    () => undefined,
    (e: unknown) => e as { code?: string; message?: string },
  );
  expect(err, `expected ${code} mentioning ${mentions}`).toBeDefined();
  expect(err!.code).toBe(code);
  expect(err!.message).toContain(mentions);
}

describe('UniPC (diffusers UniPCMultistepScheduler, flow sigmas) matches the reference', () => {
  for (const family of ['t2v-a14b-tiny', 'ti2v-5b-tiny']) {
    it(`${family} scheduler_unipc`, async () => {
      const c = await fixtureCase(family, 'scheduler_unipc');
      const steps = c.json.params.num_inference_steps as number;
      expect(JSON.parse(readFileSync(configPath(family), 'utf8')).flow_shift).toBe(c.json.params.flow_shift);
      const options: SchedulerRunOptions = { configPath: configPath(family), sampler: 'unipc', steps };
      const out = await native().runScheduler(options, c.input('sample'), c.input('model_outputs'));

      expect(timestepsOf(out.timesteps)).toEqual(timestepsOf(c.output('timesteps')));
      const sigmaErr = maxAbsDiff(sigmasOf(out.sigmas), sigmasOf(c.output('sigmas')));
      expect(sigmaErr).toBeLessThanOrEqual(1e-7);

      expect(out.prevSamples.dtype).toBe('float32');
      const err32 = maxRelError(out.prevSamples, c.output('prev_samples'));
      expect(err32).toBeLessThanOrEqual(c.json.tolerance.fp32);

      // The same run in float64 (the reference's own precision, float32 coefficients) meets the fp64 bound.
      const out64 = await native().runScheduler(options, asFloat64(c.input('sample')), asFloat64(c.input('model_outputs')));
      expect(out64.prevSamples.dtype).toBe('float64');
      const err64 = maxRelError(out64.prevSamples, c.output('prev_samples'));
      expect(err64).toBeLessThanOrEqual(c.json.tolerance.fp64);
      console.log(`[scheduler] ${family} unipc: sigmas max abs ${sigmaErr}, prev_samples rel f32 ${err32.toExponential(3)}, f64 ${err64.toExponential(3)}`);
    });
  }
});

describe('UniPC options without a fixture, against a float64 implementation written here', () => {
  const defaults: UniPCVariant = { solverOrder: 2, bh2: true, lowerOrderFinal: true, disableCorrector: [] };
  const variants: Array<[string, Record<string, unknown>, UniPCVariant]> = [
    ['defaults (checks the float64 implementation itself)', {}, defaults],
    ["solver_type 'bh1'", { solver_type: 'bh1' }, { ...defaults, bh2: false }],
    ["solver_type 'midpoint' (diffusers maps it to bh2)", { solver_type: 'midpoint' }, defaults],
    ['disable_corrector [0, 3]', { disable_corrector: [0, 3] }, { ...defaults, disableCorrector: [0, 3] }],
    ['solver_order 1', { solver_order: 1 }, { ...defaults, solverOrder: 1 }],
    ['solver_order 1 without lower_order_final', { solver_order: 1, lower_order_final: false }, { ...defaults, solverOrder: 1, lowerOrderFinal: false }],
  ];
  const dir = mkdtempSync(path.join(os.tmpdir(), 'wan-unipc-'));
  for (const [name, fields, variant] of variants) {
    it(name, async () => {
      const c = await fixtureCase('ti2v-5b-tiny', 'scheduler_unipc');
      const steps = c.json.params.num_inference_steps as number;
      const file = path.join(dir, `${name.replace(/[^a-z0-9]+/gi, '_')}.json`);
      writeFileSync(file, JSON.stringify({ ...JSON.parse(readFileSync(configPath('ti2v-5b-tiny'), 'utf8')), ...fields }));
      const out = await native().runScheduler({ configPath: file, sampler: 'unipc', steps }, c.input('sample'), c.input('model_outputs'));
      const expected = uniPCFloat64(sigmasOf(out.sigmas), toFloat64(c.input('sample')), toFloat64(c.input('model_outputs')), variant);
      const ref: TensorData = { dtype: 'float64', shape: out.prevSamples.shape, data: expected };
      const err = maxRelError(out.prevSamples, ref);
      expect(err).toBeLessThanOrEqual(c.json.tolerance.fp32);
      // Variants equal to the fixture's configuration reproduce it; the others must change the result.
      if (variant === defaults) expect(maxRelError(ref, c.output('prev_samples'))).toBeLessThanOrEqual(c.json.tolerance.fp32);
      else expect(maxRelError(out.prevSamples, c.output('prev_samples'))).toBeGreaterThan(1e-3);
      console.log(`[scheduler] unipc ${name}: rel f32 vs JS float64 ${err.toExponential(3)}`);
    });
  }
});

describe('the pipeline cases use the same timesteps and sigmas', () => {
  const cases: Array<[string, string]> = [
    ['t2v-a14b-tiny', 'pipeline'],
    ['i2v-a14b-tiny', 'pipeline'],
    ['ti2v-5b-tiny', 'pipeline_t2v'],
    ['ti2v-5b-tiny', 'pipeline_i2v'],
  ];
  for (const [family, name] of cases) {
    it(`${family} ${name}`, async () => {
      const c = await fixtureCase(family, name);
      const steps = c.json.params.num_inference_steps as number;
      const sample: TensorData = { dtype: 'float32', shape: [2], data: new Float32Array(2) };
      const outputs: TensorData = { dtype: 'float32', shape: [steps, 2], data: new Float32Array(steps * 2) };
      const out = await native().runScheduler(
        { configPath: configPath(family), sampler: 'unipc', steps, shift: c.json.params.flow_shift },
        sample,
        outputs,
      );
      expect(timestepsOf(out.timesteps)).toEqual(timestepsOf(c.output('timesteps')));
      expect(sigmasOf(out.sigmas)).toEqual(sigmasOf(c.output('sigmas')));
    });
  }
});

describe('flow-matching Euler', () => {
  it('follows x += (sigma_next - sigma) * v on the diffusers grid', async () => {
    const c = await fixtureCase('t2v-a14b-tiny', 'scheduler_unipc');
    const steps = c.json.params.num_inference_steps as number;
    const shift = c.json.params.flow_shift as number;
    const sample = c.input('sample');
    const outputs = c.input('model_outputs');
    const out = await native().runScheduler({ configPath: configPath('t2v-a14b-tiny'), sampler: 'euler', steps }, sample, outputs);

    const grid = diffusersGrid(steps, shift);
    expect(timestepsOf(out.timesteps)).toEqual(grid.timesteps);
    expect(sigmasOf(out.sigmas)).toEqual(grid.sigmas);
    expect(sigmasOf(out.sigmas)).toEqual(sigmasOf(c.output('sigmas')));

    const n = numel(sample.shape);
    const v = toFloat64(outputs);
    const x = toFloat64(sample);
    const expected = new Float64Array(steps * n);
    for (let i = 0; i < steps; i++) {
      const dt = grid.sigmas[i + 1] - grid.sigmas[i];
      for (let j = 0; j < n; j++) x[j] += dt * v[i * n + j];
      expected.set(x, i * n);
    }
    const err = maxRelError(out.prevSamples, { dtype: 'float64', shape: [steps, ...sample.shape], data: expected });
    expect(err).toBeLessThanOrEqual(c.json.tolerance.fp32);
    console.log(`[scheduler] euler: prev_samples rel f32 vs JS float64 ${err.toExponential(3)}`);
  });
});

describe("'unipc-official' (Wan2.2 FlowUniPCMultistepScheduler grid)", () => {
  for (const family of ['t2v-a14b-tiny', 'ti2v-5b-tiny']) {
    it(`${family}: differs from the diffusers grid by the reference's amount`, async () => {
      const c = await fixtureCase(family, 'scheduler_unipc');
      const steps = c.json.params.num_inference_steps as number;
      const shift = c.json.params.flow_shift as number;
      const out = await native().runScheduler(
        { configPath: configPath(family), sampler: 'unipc-official', steps },
        c.input('sample'),
        c.input('model_outputs'),
      );
      const official = sigmasOf(out.sigmas);
      const differ = maxAbsDiff(official, sigmasOf(c.output('sigmas')));
      expect(Math.abs(differ - c.json.params.official_sigmas_differ_by)).toBeLessThanOrEqual(1e-6);
      const grid = officialGrid(steps, shift);
      expect(official).toEqual(grid.sigmas);
      expect(timestepsOf(out.timesteps)).toEqual(grid.timesteps);
      expect(out.prevSamples.shape).toEqual([steps, ...c.input('sample').shape]);
      expect(toFloat64(out.prevSamples).every(Number.isFinite)).toBe(true);
      console.log(`[scheduler] ${family} official grid differs by ${differ} (reference ${c.json.params.official_sigmas_differ_by})`);
    });
  }
});

describe('invalid options and configs are rejected', () => {
  const sample: TensorData = { dtype: 'float32', shape: [1, 2], data: new Float32Array(2) };
  const outputs = (steps: number): TensorData => ({ dtype: 'float32', shape: [steps, 1, 2], data: new Float32Array(steps * 2) });
  const run = (options: SchedulerRunOptions, modelOutputs = outputs(Math.max(0, Math.trunc(options.steps) || 0))) => () =>
    native().runScheduler(options, sample, modelOutputs);
  const base = JSON.parse(readFileSync(configPath('t2v-a14b-tiny'), 'utf8'));
  const dir = mkdtempSync(path.join(os.tmpdir(), 'wan-scheduler-'));
  const withField = (field: string, value: unknown) => {
    const file = path.join(dir, `${field}.json`);
    writeFileSync(file, JSON.stringify({ ...base, [field]: value }));
    return file;
  };

  it('sampler options: ERR_WAN_BAD_ARGUMENT', async () => {
    for (const steps of [0, -1, 1.5, Number.NaN]) await expectCode(run({ sampler: 'unipc', steps }), 'ERR_WAN_BAD_ARGUMENT', 'steps');
    for (const shift of [0, -2, Number.POSITIVE_INFINITY, Number.NaN])
      await expectCode(run({ sampler: 'unipc', steps: 2, shift }), 'ERR_WAN_BAD_ARGUMENT', 'shift');
    await expectCode(run({ sampler: 'ddim' as 'unipc', steps: 2 }), 'ERR_WAN_BAD_ARGUMENT', 'sampler');
    await expectCode(run({ sampler: 'unipc', steps: 3 }, outputs(2)), 'ERR_WAN_BAD_ARGUMENT', 'modelOutputs');
  });

  it('valid runs of the same shapes succeed', async () => {
    for (const sampler of ['unipc', 'unipc-official', 'euler'] as const) {
      const out = await native().runScheduler({ configPath: configPath('t2v-a14b-tiny'), sampler, steps: 2, shift: 2 }, sample, outputs(2));
      expect(out.prevSamples.shape).toEqual([2, 1, 2]);
    }
  });

  const unsupported: Array<[string, unknown]> = [
    ['_class_name', 'DDIMScheduler'],
    ['use_flow_sigmas', false],
    ['prediction_type', 'epsilon'],
    ['use_karras_sigmas', true],
    ['use_exponential_sigmas', true],
    ['use_beta_sigmas', true],
    ['use_dynamic_shifting', true],
    ['shift_terminal', 0.1],
    ['final_sigmas_type', 'sigma_min'],
    ['timestep_spacing', 'karras'],
    ['predict_x0', false],
    ['solver_type', 'dpmsolver'],
    ['solver_order', 3],
    ['lower_order_final', false],
    ['thresholding', true],
    ['solver_p', { _class_name: 'DPMSolverMultistepScheduler' }],
  ];
  for (const [field, value] of unsupported) {
    it(`config ${field} = ${JSON.stringify(value)}: ERR_WAN_BAD_CHECKPOINT`, async () => {
      await expectCode(run({ configPath: withField(field, value), sampler: 'unipc', steps: 2 }), 'ERR_WAN_BAD_CHECKPOINT', `'${field}'`);
    });
  }
});
