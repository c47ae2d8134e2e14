// `wan-video parity` over the shipped fixtures: every case of every family, end to end.
import { cpSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';

import { describe, expect, it } from 'vitest';

import type { TensorData } from '../binding.js';
import { readManifest } from '../lib/fixtures.js';
import { native } from '../lib/native.js';
import { runParity } from '../lib/parity.js';
import { runtimeInfo } from '../lib/runtime.js';
import { headRows, maxRelError, nonZeroPastRow } from '../lib/tensor.js';
import { buildCli, startCli } from './helpers/cli.js';
import { FIXTURES } from './helpers/fixtures.js';
import { writeTensorData } from './helpers/safetensors-writer.js';

describe('parity runner on test/fixtures/wan-tiny', () => {
  it('every case is within its manifest tolerance (timesteps and experts exact)', async () => {
    const lines: string[] = [];
    const report = await runParity(FIXTURES, (l) => lines.push(l));
    const failed = report.checks.filter((c) => !c.ok).map((c) => `${c.name}: ${c.error} > ${c.tolerance}`);
    expect(report.failures.filter((f) => !report.checks.some((c) => c.name === f))).toEqual([]);
    expect(failed).toEqual([]);
    expect(report.ok).toBe(true);
    // Every case of the manifest produced checks, including the three pipelines end to end.
    const cases = await readManifest(FIXTURES);
    for (const c of cases) {
      expect(report.checks.some((r) => r.name.startsWith(`${c.family}/${c.case}:`)), `${c.family}/${c.case}`).toBe(true);
    }
    for (const pipeline of ['t2v-a14b-tiny/pipeline', 'i2v-a14b-tiny/pipeline', 'ti2v-5b-tiny/pipeline_t2v', 'ti2v-5b-tiny/pipeline_i2v']) {
      for (const what of ['timesteps', 'expert_per_step', 'latents_per_step', 'final_latents', 'video', 'frames']) {
        expect(report.checks.find((r) => r.name === `${pipeline}:${what}`)?.ok, `${pipeline}:${what}`).toBe(true);
      }
    }
    expect(lines.at(-1)).toMatch(/^parity \(cpu, float32, offload none\): \d+ passed, 0 failed$/);
    // The manifests are the authority: every output they list is checked, under their own bound (a
    // tolerance loosened, or a check dropped, in lib/parity.ts fails here). 'rel' is the manifest's
    // fp32 bound exactly; 'abs' only for sigmas, at most the scheduler manifests' 'abs 1e-7'; 'exact' 0.
    for (const c of cases) {
      const json = JSON.parse(readFileSync(path.join(FIXTURES, c.json), 'utf8'));
      for (const output of Object.keys(json.outputs)) {
        const check = report.checks.find((r) => r.name === `${c.family}/${c.case}:${output}`);
        expect(check, `${c.family}/${c.case}:${output} is checked`).toBeDefined();
        if (check!.metric === 'rel') expect(check!.tolerance, check!.name).toBe(json.tolerance.fp32);
        else if (check!.metric === 'abs') expect([check!.name, check!.tolerance <= 1e-7]).toEqual([`${c.family}/${c.case}:sigmas`, true]);
        else expect(check!.tolerance, check!.name).toBe(0);
      }
    }
    for (const r of report.checks.filter((r) => r.metric === 'rel')) {
      const c = cases.find((e) => r.name.startsWith(`${e.family}/${e.case}:`))!;
      expect(r.tolerance, r.name).toBe(JSON.parse(readFileSync(path.join(FIXTURES, c.json), 'utf8')).tolerance.fp32);
    }
  });

  it.each(['model', 'sequential'] as const)("with offload '%s' the whole-pipeline cases still match the reference", async (offload) => {
    const lines: string[] = [];
    const report = await runParity(FIXTURES, (l) => lines.push(l), { offload });
    expect(report.checks.filter((c) => !c.ok).map((c) => c.name)).toEqual([]);
    expect(report.ok).toBe(true);
    expect(report.checks.filter((c) => c.name.endsWith('pipeline:final_latents') || c.name.endsWith('pipeline_i2v:video')).length).toBe(3);
    expect(lines.at(-1)).toMatch(new RegExp(`^parity \\(cpu, float32, offload ${offload}\\): \\d+ passed, 0 failed$`));
  });

  it('fails (and says why) on a folder without fixtures', async () => {
    const report = await runParity(`${FIXTURES}/t2v-a14b-tiny/scheduler`);
    expect(report.ok).toBe(false);
    expect(report.failures[0]).toMatch(/no manifest\.json/);
  });

  it('fails, naming the check, on a reference off by more than its tolerance or one timestep off; passes within it', async () => {
    // A one-case copy of the fixtures (t2v scheduler_unipc) whose reference outputs are perturbed:
    // the runner must apply the manifest bound, not only run the case.
    const family = 't2v-a14b-tiny';
    const tmp = mkdtempSync(path.join(tmpdir(), 'wan-parity-'));
    try {
      cpSync(path.join(FIXTURES, family, 'scheduler'), path.join(tmp, family, 'scheduler'), { recursive: true });
      mkdirSync(path.join(tmp, family, 'cases'));
      const json = JSON.parse(readFileSync(path.join(FIXTURES, family, 'cases', 'scheduler_unipc.json'), 'utf8'));
      writeFileSync(path.join(tmp, family, 'cases', 'scheduler_unipc.json'), JSON.stringify(json));
      const entry = { case: 'scheduler_unipc', kind: 'scheduler', json: `${family}/cases/scheduler_unipc.json` };
      writeFileSync(path.join(tmp, 'manifest.json'), JSON.stringify({ format: 'wan-tiny-fixture/1', families: { [family]: { folder: family, cases: [entry] } } }));
      const { tensors } = await native().readSafetensors(path.join(FIXTURES, family, 'cases', json.tensors_file));
      const samplesKey = json.outputs.prev_samples.tensor as string;
      const timestepsKey = json.outputs.timesteps.tensor as string;
      // prev_samples with one value moved by `times` x the fp32 bound (relative to max|ref|), timesteps[0] by `dt`.
      const perturb = (times: number, dt: number) => {
        const ref = tensors[samplesKey];
        const samples = Float64Array.from(ref.data as Float64Array);
        const max = samples.reduce((m, v) => Math.max(m, Math.abs(v)), 0);
        samples[samples.length >> 1] += times * json.tolerance.fp32 * max;
        const timesteps = BigInt64Array.from(tensors[timestepsKey].data as BigInt64Array);
        timesteps[0] += BigInt(dt);
        const edited: Record<string, TensorData> = { ...tensors, [samplesKey]: { ...ref, data: samples }, [timestepsKey]: { ...tensors[timestepsKey], data: timesteps } };
        writeTensorData(path.join(tmp, family, 'cases', json.tensors_file), edited);
      };
      const failed = async () => (await runParity(tmp)).checks.filter((c) => !c.ok).map((c) => c.name);

      perturb(0.5, 0);
      expect(await failed()).toEqual([]);
      expect((await runParity(tmp)).ok).toBe(true);
      perturb(3, 0);
      expect(await failed()).toEqual([`${family}/scheduler_unipc:prev_samples`]);
      perturb(0, 1);
      expect(await failed()).toEqual([`${family}/scheduler_unipc:timesteps`]);
      // The CLI says so and exits 1.
      buildCli();
      const cli = await startCli(['parity', tmp]).done;
      expect(cli.code).toBe(1);
      expect(cli.stdout).toMatch(/^FAIL t2v-a14b-tiny\/scheduler_unipc:timesteps +1 mismatches/m);
      expect(cli.stdout.trim().split('\n').at(-1)).toMatch(/: 2 passed, 1 failed$/);
    } finally {
      rmSync(tmp, { recursive: true, force: true });
    }
  });
});

describe('parity metrics', () => {
  const ref: TensorData = { dtype: 'float64', shape: [4], data: Float64Array.from([1, -2, 3, 0.5]) };
  it('a NaN anywhere, in the output or the reference, is an infinite error', () => {
    expect(maxRelError({ ...ref, data: Float64Array.from([1, -2, 3, 0.5 + 3e-6]) }, ref)).toBeCloseTo(1e-6, 12);
    for (let i = 0; i < 4; i++) {
      const data = Float64Array.from(ref.data as Float64Array);
      data[i] = NaN;
      expect(maxRelError({ ...ref, data }, ref), `output NaN at ${i}`).toBe(Infinity);
      expect(maxRelError(ref, { ...ref, data }), `reference NaN at ${i}`).toBe(Infinity);
    }
  });

  it('prompt embeddings: the head needs enough rows, and every value past it counts unless exactly 0', () => {
    const embeds: TensorData = { dtype: 'float32', shape: [2, 3, 2], data: Float32Array.from([1, 2, 3, 4, 0, 0, 5, 6, 0, -0, 0, 1e-30]) };
    expect(headRows(embeds, 1).data).toEqual(Float64Array.from([1, 2, 5, 6]));
    expect(() => headRows(embeds, 4)).toThrow(/expected \[B, S >= 4, D\], got \[2,3,2\]/);
    expect(nonZeroPastRow(embeds, 1)).toBe(3); // 3, 4 and the 1e-30 of video 2
    expect(nonZeroPastRow(embeds, 2)).toBe(1);
    expect(nonZeroPastRow({ ...embeds, data: Float32Array.from([0, 0, 0, 0, NaN, 0, 0, 0, 0, 0, 0, 0]) }, 1)).toBe(1);
  });
});

describe('wan-video parity (the CLI)', () => {
  it('prints one line per check and exits 0 on the shipped fixtures, 1 on a folder without them', async () => {
    buildCli();
    const ok = await startCli(['parity', FIXTURES]).done;
    expect(ok.code).toBe(0);
    const lines = ok.stdout.trim().split('\n');
    expect(lines.filter((l) => l.startsWith('ok  ')).length).toBeGreaterThan(50);
    expect(lines.some((l) => l.startsWith('FAIL'))).toBe(false);
    expect(lines.at(-1)).toMatch(/^parity \(cpu, float32, offload none\): \d+ passed, 0 failed$/);
    const bad = await startCli(['parity', `${FIXTURES}/t2v-a14b-tiny/vae`]).done;
    expect(bad.code).toBe(1);
    expect(bad.stdout + bad.stderr).toMatch(/no manifest\.json/);
    const missing = await startCli(['parity', `${FIXTURES}/no-such-folder`]).done;
    expect(missing.code).toBe(1);
    expect(missing.stderr).toContain(`ERR_WAN_BAD_ARGUMENT: option 'dir' is "${FIXTURES}/no-such-folder"`);
  });

  it('--device takes a GPU (float32, TF32 off) where this build has one, and says why not in one error where it has not', async () => {
    const info = runtimeInfo();
    if (info.cudaAvailable) {
      const r = await startCli(['parity', FIXTURES, '--device', 'cuda']).done;
      expect(r.stdout.trim().split('\n').at(-1)).toMatch(/^parity \(cuda, float32, offload none\): \d+ passed, 0 failed$/);
      expect(r.code).toBe(0);
    } else {
      const r = await startCli(['parity', FIXTURES, '--device', 'cuda']).done;
      expect(r.code).toBe(1);
      expect(r.stdout).toBe('');
      expect(info.cudaUnavailableReason).toMatch(info.flavour === 'cpu' ? /no CUDA \(it was built against a CPU libtorch\)/ : /sees no CUDA device/);
      expect(r.stderr).toContain(`ERR_WAN_NO_CUDA: parity on cuda: ${info.cudaUnavailableReason} (libtorch ${info.libtorchVersion})`);
    }
    const bad = await startCli(['parity', FIXTURES, '--offload', 'always']).done;
    expect(bad.code).not.toBe(0);
    expect(bad.stderr).toContain("option '--offload <mode>' argument 'always' is invalid");
  });
});
