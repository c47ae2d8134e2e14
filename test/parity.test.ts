// `wan-video parity` over the shipped fixtures: every case of every family, end to end.
import { describe, expect, it } from 'vitest';

import { readManifest } from '../lib/fixtures.js';
import { runParity } from '../lib/parity.js';
import { runtimeInfo } from '../lib/runtime.js';
import { buildCli, startCli } from './helpers/cli.js';
import { FIXTURES } from './helpers/fixtures.js';

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
      expect(r.stderr).toContain(`ERR_WAN_NO_CUDA: parity on cuda: this build has no CUDA (libtorch ${info.libtorchVersion}, CPU)`);
    }
    const bad = await startCli(['parity', FIXTURES, '--offload', 'always']).done;
    expect(bad.code).not.toBe(0);
    expect(bad.stderr).toContain("option '--offload <mode>' argument 'always' is invalid");
  });
});
