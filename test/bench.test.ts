// The native benchmark and component runner (native/tools/wan_bench.cpp, wan_run.cpp) on the CPU:
// the small config runs in seconds; the JSON must carry every field with a positive finite value.
// No timing assertions: numbers vary with the machine.
import { execFileSync, spawnSync } from 'node:child_process';
import { cpSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

import { afterAll, describe, expect, it } from 'vitest';

import { native, nativePath } from '../lib/native.js';
import { maxRelError } from '../lib/tensor.js';
import { buildCli } from './helpers/cli.js';
import { fixtureCase, FIXTURES } from './helpers/fixtures.js';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const binDir = process.env.WAN_VIDEO_ADDON ? path.dirname(process.env.WAN_VIDEO_ADDON) : path.join(ROOT, 'build', 'Release');
const tmp = mkdtempSync(path.join(os.tmpdir(), 'wan-bench-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

function positiveFinite(v: unknown): boolean {
  return typeof v === 'number' && Number.isFinite(v) && v > 0;
}

// PyTorch's FLOP counter (torch.utils.flop_counter) on the reference modules (diffusers
// WanTransformer3DModel, transformers UMT5EncoderModel) at wan_bench's configs, on the meta device:
// test/fixtures/flops/make.py wrote it.
const REFERENCE_FLOPS = JSON.parse(readFileSync(path.join(ROOT, 'test', 'fixtures', 'flops', 'reference.json'), 'utf8'));
const flopsOnly = (args: string[]) => {
  const p = spawnSync(path.join(binDir, 'wan_bench'), ['--flops-only', ...args], { encoding: 'utf8' });
  expect(p.status, p.stderr).toBe(0);
  return JSON.parse(p.stdout.trim());
};

describe('npm run bench (wan_bench, small config on the CPU)', () => {
  it('prints one JSON line with positive finite timings, FLOPs, rates and peaks', () => {
    expect(existsSync(path.join(binDir, 'wan_bench'))).toBe(true);
    const stdout = execFileSync(process.execPath, [path.join(ROOT, 'scripts', 'bench.mjs'), '--model', 'small', '--device', 'cpu', '--iters', '1', '--vae-tiled', '--json'], {
      env: { ...process.env, WAN_BENCH_BIN: path.join(binDir, 'wan_bench') },
      encoding: 'utf8',
    });
    const lines = stdout.trim().split('\n');
    expect(lines).toHaveLength(1);
    const r = JSON.parse(lines[0]);
    expect(r).toMatchObject({ tool: 'wan_bench', model: 'small', device: 'cpu', dtype: 'float32', frames: 9, height: 128, width: 128 });
    expect(r.tokens).toBe(3 * 8 * 8); // 3 latent frames x (128/8/2)^2
    for (const v of [r.rates.matmul_tflops, r.rates.attention_tflops, r.end_to_end_seconds]) expect(positiveFinite(v)).toBe(true);
    for (const c of [r.text_encode, r.dit_step]) {
      for (const k of ['seconds', 'seconds_min', 'flops', 'flops_linear', 'flops_attention', 'tflops', 'peak_bytes', 'weight_bytes', 'floor_seconds', 'fraction_of_floor']) {
        expect(positiveFinite(c[k]), k).toBe(true);
      }
    }
    // VAE decode of the 16x3x16x16 latents: whole frames (fits easily) and 64 px tiles; no FLOPs counted.
    // Warmed up on the first 2 latent frames (every convolution shape), then one whole decode timed.
    expect(r.vae_decode).toMatchObject({ vae: 'tiny', dtype: 'float32', latent_frames: 3, latent_height: 16, latent_width: 16, counted: 'untiled', tiled_splits_frames: true, warmup_latent_frames: 2 });
    for (const k of ['seconds_min', 'peak_bytes', 'weight_bytes', 'free_bytes']) expect(positiveFinite(r.vae_decode[k]), k).toBe(true);
    for (const v of [r.vae_decode.untiled, r.vae_decode.tiled]) {
      for (const k of ['seconds', 'seconds_min', 'peak_bytes', 'estimate_bytes']) expect(positiveFinite(v[k]), k).toBe(true);
      expect(v.flops).toBeUndefined();
    }
    expect(r.vae_decode.tiled.estimate_bytes).toBeLessThan(r.vae_decode.untiled.estimate_bytes);
    expect(r.vae_decode.seconds_min).toBe(r.vae_decode.untiled.seconds_min);
    // Without --vae-tiled the tiled decode runs only where whole frames do not fit (here they do).
    const vaeOnly = spawnSync(path.join(binDir, 'wan_bench'), ['--skip', 'text,dit,rates', '--warmup', '0', '--json'], { encoding: 'utf8' });
    expect(vaeOnly.status, vaeOnly.stderr).toBe(0);
    const v = JSON.parse(vaeOnly.stdout.trim()).vae_decode;
    expect(v).toMatchObject({ counted: 'untiled', tiled: null });
    expect(v.tiled_estimate_bytes).toBe(r.vae_decode.tiled.estimate_bytes);
    expect(v.untiled.iters).toBe(1);
    // The timed run reports the counts --flops-only prints (checked against the reference below).
    const counted = flopsOnly(['--model', 'small']);
    expect(r.dit_step.flops_linear).toBe(counted.dit_step.linear);
    expect(r.dit_step.flops_attention).toBe(counted.dit_step.attention);
    expect(r.text_encode.flops_linear).toBe(counted.text_encode.linear);
    expect(r.text_encode.flops_attention).toBe(counted.text_encode.attention);
    expect(r.end_to_end_seconds).toBeCloseTo(r.text_encode.seconds_min + 40 * r.dit_step.seconds_min + r.vae_decode.seconds_min, 3);
  });

  it('--offload times the DiT step with the weights in host memory and checks it against the resident step', () => {
    for (const mode of ['model', 'sequential']) {
      const p = spawnSync(path.join(binDir, 'wan_bench'), ['--skip', 'text,vae,rates', '--warmup', '0', '--iters', '1', '--offload', mode, '--json'], { encoding: 'utf8' });
      expect(p.status, p.stderr).toBe(0);
      const r = JSON.parse(p.stdout.trim());
      expect(r.dit_step_offload).toMatchObject({ offload: mode, matches_resident: true, iters: 1 });
      expect(r.dit_step_offload.seconds_min).toBeGreaterThan(0);
      // Between steps 'model' holds nothing on the device (the copy is dropped), 'sequential' the outer layers.
      if (mode === 'model') expect(r.dit_step_offload.weight_bytes).toBe(0);
      else expect(r.dit_step_offload.weight_bytes).toBeGreaterThan(0);
      if (mode === 'sequential') expect(r.dit_step_offload.weight_bytes).toBeLessThan(r.dit_step.weight_bytes);
      // Per CFG step (two passes, float32 here): 'model' uploads the whole expert once; 'sequential'
      // streams the blocks (all but what stays) once for both passes, not once per pass.
      const perStep = mode === 'model' ? r.dit_step.weight_bytes : r.dit_step.weight_bytes - r.dit_step_offload.weight_bytes;
      expect(r.dit_step_offload.upload_bytes_per_step).toBe(perStep);
    }
    const bad = spawnSync(path.join(binDir, 'wan_bench'), ['--offload', 'disk'], { encoding: 'utf8' });
    expect(bad.status).toBe(1);
    expect(bad.stderr).toContain("--offload must be none, model or sequential; got 'disk'");
  });

  it('--sdpa-order / WAN_SDPA_ORDER put SDPA backends first where libtorch can order them, and time each at the DiT shape', () => {
    const [major, minor] = native().runtimeInfo().libtorchVersion.split('.').map(Number);
    const orderable = major > 2 || (major === 2 && minor >= 6);
    const p = spawnSync(path.join(binDir, 'wan_bench'), ['--skip', 'text,vae', '--warmup', '0', '--iters', '1', '--sdpa-order', 'cudnn,flash', '--json'], { encoding: 'utf8' });
    expect(p.status, p.stderr).toBe(0);
    const r = JSON.parse(p.stdout.trim());
    expect(r).toMatchObject({ sdpa_order: 'cudnn,flash', sdpa_order_applied: orderable });
    const byBackend = r.attention_tflops_at_dit_shape;
    if (orderable) {
      expect(Object.keys(byBackend).sort()).toEqual(['cudnn_attention', 'efficient_attention', 'flash_attention']);
      // null: that backend does not take this input (e.g. cuDNN on the CPU); a number: it ran.
      for (const v of Object.values(byBackend)) expect(v === null || positiveFinite(v)).toBe(true);
      // Each backend's output is checked: the first that ran is the others' reference, and every one
      // is compared with the float32 fallback on the sequence's first and last query rows.
      const agree = r.attention_agreement_at_dit_shape;
      expect(agree.reference).toBe(Object.keys(byBackend).find((k) => byBackend[k] !== null));
      expect(Object.keys(agree.vs_float32)).toContain(agree.reference);
      expect(agree.vs_reference[agree.reference]).toBeUndefined();
      for (const [name, a] of Object.entries<any>({ ...agree.vs_reference, ...agree.vs_float32 })) {
        expect(byBackend[name], name).not.toBeNull();
        expect(a.finite).toBe(true);
        expect(a.cosine).toBeGreaterThan(0.99999);
        expect(a.max_rel).toBeLessThan(1e-3);
      }
      // --sdpa-order: the step's output against the same step in libtorch's default order (on the
      // CPU libtorch runs the same kernel in any order: identical).
      expect(r.dit_step_vs_default_order).toMatchObject({ finite: true, cosine: 1, max_rel: 0 });
    } else {
      expect(byBackend).toEqual({}); // libtorch < 2.6 has no order to set (1.13: no SDPA at all)
      expect(r.attention_agreement_at_dit_shape).toBeUndefined();
      expect(r.dit_step_vs_default_order).toBeUndefined();
      expect(r.rates.attention_backend).toBe('chunked_fallback');
    }

    for (const [args, env, message] of [
      [['--sdpa-order', 'cudnn,fastest'], {}, "wan_bench: unknown attention backend 'fastest' (math, flash, efficient or cudnn)"],
      [[], { WAN_SDPA_ORDER: 'flash,nope' }, "wan_bench: WAN_SDPA_ORDER: unknown attention backend 'nope'"],
    ] as const) {
      const bad = spawnSync(path.join(binDir, 'wan_bench'), ['--skip', 'text,vae,dit', '--warmup', '0', '--iters', '1', ...args], {
        encoding: 'utf8',
        env: { ...process.env, ...env },
      });
      expect(bad.status).toBe(1);
      expect(bad.stderr).toContain(message);
    }
  });

  it('--pipeline runs a whole generation with random weights in each offload mode and reports its peak', () => {
    const index = path.join(FIXTURES, 't2v-a14b-tiny');
    const runs: Record<string, any> = {};
    for (const mode of ['none', 'model', 'sequential']) {
      const p = spawnSync(path.join(binDir, 'wan_bench'), ['--pipeline', '--index', index, '--offload', mode, '--json'], { encoding: 'utf8' });
      expect(p.status, p.stderr).toBe(0);
      const r = JSON.parse(p.stdout.trim());
      expect(r).toMatchObject({ tool: 'wan_bench', model: 'small', frames: 9, height: 128, width: 128 });
      expect(r.pipeline).toMatchObject({ offload: mode, steps: 2, tiled_decode: false, video_frames: 9, video_finite: true });
      for (const k of ['seconds', 'denoise_step_seconds_min', 'decode_seconds', 'peak_bytes', 'load_seconds']) expect(positiveFinite(r.pipeline[k]), k).toBe(true);
      runs[mode] = r.pipeline;
    }
    // Between generations 'none' keeps both experts and the VAE on the device, 'model' nothing,
    // 'sequential' the DiT's outer layers.
    expect(runs.model.resident_weight_bytes).toBe(0);
    expect(runs.sequential.resident_weight_bytes).toBeGreaterThan(0);
    expect(runs.sequential.resident_weight_bytes).toBeLessThan(runs.none.resident_weight_bytes);

    const noIndex = spawnSync(path.join(binDir, 'wan_bench'), ['--pipeline'], { encoding: 'utf8' });
    expect(noIndex.status).toBe(1);
    expect(noIndex.stderr).toContain('--index is required');
  });

  it('runs a bfloat16 DiT step without a libtorch warning', () => {
    // libtorch >= 2.4 warns when at::rms_norm gets a weight in another dtype than its input, and
    // then skips its fused kernel: the q/k norm weights must be in the model dtype.
    const p = spawnSync(path.join(binDir, 'wan_bench'), ['--model', 'small', '--device', 'cpu', '--dtype', 'bfloat16', '--warmup', '0', '--iters', '1', '--skip', 'text,vae,rates', '--json'], {
      encoding: 'utf8',
    });
    expect(p.status, p.stderr).toBe(0);
    expect(JSON.parse(p.stdout.trim()).dit_step.seconds_min).toBeGreaterThan(0);
    expect(p.stderr).not.toMatch(/warning/i);
  });

  // The counted FLOPs against PyTorch's counter on the reference modules, at the small config and
  // the real ones (which --flops-only counts without allocating or running anything). Exact: both
  // count the same matrix products (2 FLOPs per multiply-add; elementwise work left out by both),
  // and every count here is an integer below 2^53, exact in a double.
  it('--flops-only counts exactly what PyTorch\'s FLOP counter counts on the reference modules', () => {
    const cases: [string, string[], string][] = [
      ['dit_small', ['--model', 'small'], 'text_small'],
      ['dit_a14b_1280x720x81', ['--model', 'a14b'], 'text_umt5_xxl'],
      ['dit_a14b_832x480x81', ['--model', 'a14b', '--width', '832', '--height', '480'], 'text_umt5_xxl'],
      ['dit_ti2v5b_1280x704x121', ['--model', 'ti2v5b'], 'text_umt5_xxl'],
    ];
    for (const [name, args, textName] of cases) {
      const ref = REFERENCE_FLOPS.cases[name];
      const ours = flopsOnly(args);
      expect(ours, name).toMatchObject({ frames: ref.frames, height: ref.height, width: ref.width, tokens: ref.tokens, text_len: ref.text_len });
      expect([ours.latent_frames, ours.latent_height, ours.latent_width], name).toEqual(ref.latent_shape.slice(2));
      // TI2V-5B: one timestep per token, as its pipeline (expand_timesteps) passes them.
      expect(ours.timestep_values, name).toBe(ref.timestep_shape.length === 2 ? ref.tokens : 1);
      const f = ours.dit_forward;
      expect({ linear: f.linear, attention: f.attention, total: f.total }, name).toEqual({ linear: ref.linear, attention: ref.attention, total: ref.total });
      const m = ref.by_module;
      expect(f.patch_embedding, name).toBe(m.patch_embedding);
      expect(f.time_embedding, name).toBe(m.time_embedder + m.time_proj);
      expect(f.text_embedding, name).toBe(m.text_embedder);
      expect(f.proj_out, name).toBe(m.proj_out);
      expect(f.blocks.linear + f.blocks.attention, name).toBe(m.blocks_self_attention + m.blocks_cross_attention + m.blocks_ffn);
      expect(f.blocks.attention, name).toBe(ref.attention);
      // The CFG step: two whole forwards (the reference's work; ours too with resident weights).
      const step = ours.dit_step;
      expect(step.attention, name).toBe(2 * ref.attention);
      expect(step.linear, name).toBe(2 * ref.linear);
      const text = REFERENCE_FLOPS.cases[textName];
      expect(ours.text_encode, textName).toEqual({ linear: text.linear, attention: text.attention, total: text.total });
    }
    // The reference's own check: routing SDPA to its fused op moved the attention FLOPs out of the
    // math path's bmm's and changed no total.
    for (const c of Object.values<any>(REFERENCE_FLOPS.cases)) {
      expect(c.total_math_path).toBe(c.total);
      expect(c.attention).toBeGreaterThan(0);
    }
  });

  it('names a bad model in its error and exits 1', () => {
    const p = spawnSync(path.join(binDir, 'wan_bench'), ['--model', 'huge'], { encoding: 'utf8' });
    expect(p.status).toBe(1);
    expect(p.stderr).toMatch(/--model must be small, a14b or ti2v5b; got 'huge'/);
  });
});

describe('npm run bench -- --reference (ours vs the reference modules, same configs, one command)', () => {
  const bench = (args: string[], env: Record<string, string> = {}) =>
    spawnSync(process.execPath, [path.join(ROOT, 'scripts', 'bench.mjs'), ...args], {
      env: { ...process.env, WAN_BENCH_BIN: path.join(binDir, 'wan_bench'), ...env },
      encoding: 'utf8',
    });

  it('checks the reference python before running anything, and says what is missing', () => {
    const absent = bench(['--reference', '--python', path.join(tmp, 'no-such-python')]);
    expect(absent.status).toBe(2);
    expect(absent.stderr).toMatch(/--reference: cannot run .*no-such-python.*pass --python or set PYTHON/);
    expect(absent.stderr).not.toMatch(/ours:/);

    // A python whose import of the reference packages fails the way a bare python3 does.
    const bare = path.join(tmp, 'python-without-diffusers');
    writeFileSync(bare, `#!/bin/sh\necho "ModuleNotFoundError: No module named 'diffusers'" >&2\nexit 1\n`, { mode: 0o755 });
    const missing = bench(['--reference'], { PYTHON: bare });
    expect(missing.status).toBe(2);
    expect(missing.stderr).toContain("--reference needs a python with torch, diffusers and transformers");
    expect(missing.stderr).toContain("No module named 'diffusers'");
    expect(missing.stdout).toBe('');

    const noValue = bench(['--python']);
    expect(noValue.status).toBe(2);
    expect(noValue.stderr).toContain('--python needs a value');
  });

  // The real reference needs torch + diffusers + transformers (not on CI): set WAN_TEST_REFERENCE_PYTHON
  // (and PYTHONPATH to a diffusers src/ when it is not installed) to run it.
  it.runIf(Boolean(process.env.WAN_TEST_REFERENCE_PYTHON))('times ours and the reference at the small config and prints both with the ratio', () => {
    const out = path.join(tmp, 'bench-reference');
    const p = bench(['--reference', '--python', process.env.WAN_TEST_REFERENCE_PYTHON!, '--out', out, '--iters', '1', '--warmup', '0']);
    expect(p.status, p.stderr).toBe(0);
    const read = (name: string) => readFileSync(path.join(out, name), 'utf8').trim().split('\n').map((l) => JSON.parse(l));
    const [ours] = read('ours.jsonl');
    const [ref] = read('reference.jsonl');
    expect(ref).toMatchObject({ tool: 'reference', model: 'small', width: ours.width, height: ours.height, frames: ours.frames, dtype: ours.dtype });
    for (const comp of ['dit_step', 'text_encode', 'vae_decode']) {
      // The VAE row says which of our decodes it counts: "vae_decode (untiled, float32)".
      const label = comp === 'vae_decode' ? `${comp} (${ours[comp].counted}, ${ours[comp].dtype})` : comp;
      const row = p.stdout.split('\n').find((l) => l.startsWith(`| small ${ours.width}x${ours.height}x${ours.frames} | ${label} |`));
      expect(row, comp).toBeDefined();
      const ratio = ref[comp].seconds_min / ours[comp].seconds_min;
      expect(row).toContain(`| ${ratio.toFixed(2)}x |`);
    }
  });
});

describe('wan_run (the component runner of bench/device/parity.py)', () => {
  it('runs the tiny T2V transformer on the fixture inputs within the fixture tolerance', async () => {
    const fx = await fixtureCase('t2v-a14b-tiny', 'transformer_forward');
    const out = path.join(tmp, 'dit.safetensors');
    const p = spawnSync(
      path.join(binDir, 'wan_run'),
      ['dit', '--model', path.join(FIXTURES, 't2v-a14b-tiny', 'transformer'), '--inputs', path.join(FIXTURES, 't2v-a14b-tiny', 'cases', 'transformer_forward.safetensors'), '--out', out],
      { encoding: 'utf8' },
    );
    expect(p.status, p.stderr).toBe(0);
    expect(JSON.parse(p.stdout.trim())).toMatchObject({ component: 'dit' });
    const { tensors } = await native().readSafetensors(out);
    expect(maxRelError(tensors.sample, fx.output('output'))).toBeLessThan(fx.json.tolerance.fp32);
  });

  it('runs the tiny UMT5 encoder on the fixture ids within the fixture tolerance', async () => {
    const fx = await fixtureCase('t2v-a14b-tiny', 'text_encoder');
    const out = path.join(tmp, 'umt5.safetensors');
    const p = spawnSync(
      path.join(binDir, 'wan_run'),
      ['umt5', '--model', path.join(FIXTURES, 't2v-a14b-tiny', 'text_encoder'), '--inputs', path.join(FIXTURES, 't2v-a14b-tiny', 'cases', 'text_encoder.safetensors'), '--out', out],
      { encoding: 'utf8' },
    );
    expect(p.status, p.stderr).toBe(0);
    const { tensors } = await native().readSafetensors(out);
    expect(maxRelError(tensors.last_hidden_state, fx.output('last_hidden_state'))).toBeLessThan(fx.json.tolerance.fp32);
  });

  for (const family of ['t2v-a14b-tiny', 'ti2v-5b-tiny']) {
    it(`decodes the ${family} VAE fixture latents (vae-decode) within the fixture tolerance, untiled and tiled`, async () => {
      const fx = await fixtureCase(family, 'vae_decode');
      const inputs = path.join(FIXTURES, family, 'cases', 'vae_decode.safetensors');
      for (const tiled of ['0', '1']) {
        const out = path.join(tmp, `vae-${family}-${tiled}.safetensors`);
        // 32 px tiles with 16 px overlap split the Wan2.1 fixture's 32x48 frames; the Wan2.2 one (32x64) too.
        const p = spawnSync(
          path.join(binDir, 'wan_run'),
          ['vae-decode', '--model', path.join(FIXTURES, family, 'vae'), '--inputs', inputs, '--latents-tensor', 'latents_denormalized', '--out', out,
            '--tiled', tiled, '--tile-size', '32', '--tile-overlap', '16'],
          { encoding: 'utf8' },
        );
        expect(p.status, p.stderr).toBe(0);
        expect(JSON.parse(p.stdout.trim())).toMatchObject({ component: 'vae-decode', tiled: tiled === '1' });
        const { tensors } = await native().readSafetensors(out);
        expect(tensors.sample.shape).toEqual(fx.output('video').shape);
        // Untiled is the reference computation; tiling blends overlapping tiles and differs slightly.
        if (tiled === '0') expect(maxRelError(tensors.sample, fx.output('video'))).toBeLessThan(fx.json.tolerance.fp32);
      }
    });
  }

  it('refuses kernel-check in a CPU build (or off the GPU) and a missing input file with a message', () => {
    const info = native().runtimeInfo();  // the tools are built with the addon, against the same libtorch
    const k = spawnSync(path.join(binDir, 'wan_run'), ['kernel-check'], { encoding: 'utf8' });
    if (info.flavour === 'cpu') {
      expect(k.status).toBe(2);
      expect(k.stderr).toMatch(/needs a CUDA build/);
    } else {
      expect(k.status).toBe(1);
      expect(k.stderr).toMatch(/kernel-check needs --device cuda/);
      if (!info.cudaAvailable) {
        const g = spawnSync(path.join(binDir, 'wan_run'), ['kernel-check', '--device', 'cuda'], { encoding: 'utf8' });
        expect(g.status).toBe(1);
        expect(g.stderr).toContain(`asks for cuda but ${info.cudaUnavailableReason}`);
      }
    }
    const m = spawnSync(path.join(binDir, 'wan_run'), ['dit', '--model', path.join(FIXTURES, 't2v-a14b-tiny', 'transformer'), '--out', path.join(tmp, 'x.safetensors')], { encoding: 'utf8' });
    expect(m.status).toBe(1);
    expect(m.stderr).toMatch(/--inputs is required/);
  });
});

describe('bench/device/fixture_parity.mjs (the golden fixtures through the addon on the device)', () => {
  const script = path.join(ROOT, 'bench', 'device', 'fixture_parity.mjs');
  const run = (dist: string, device: string, offloads: string, out: string) =>
    spawnSync(process.execPath, [script, dist, FIXTURES, device, offloads, out], { env: { ...process.env, WAN_VIDEO_ADDON: nativePath() }, encoding: 'utf8' });

  it('runs from a copy of dist/lib with no node_modules in reach, one JSON line per offload mode', () => {
    buildCli();
    const dist = path.join(tmp, 'device-dist');
    cpSync(path.join(ROOT, 'dist', 'lib'), path.join(dist, 'lib'), { recursive: true });
    const out = path.join(tmp, 'fixtures.jsonl');
    const p = run(dist, 'cpu', 'none,sequential', out);
    expect(p.status, p.stdout + p.stderr).toBe(0);
    expect(p.stdout).toMatch(/^parity \(cpu, float32, offload sequential\): \d+ passed, 0 failed$/m);
    const lines = readFileSync(out, 'utf8').trim().split('\n').map((l) => JSON.parse(l));
    expect(lines.map((l) => [l.tool, l.device, l.offload, l.dtype, l.failed])).toEqual([
      ['fixture_parity', 'cpu', 'none', 'float32', 0],
      ['fixture_parity', 'cpu', 'sequential', 'float32', 0],
    ]);
    for (const l of lines) {
      expect(l.passed).toBeGreaterThan(50);
      expect(l.worst.ratio).toBeGreaterThan(0);
      expect(l.worst.ratio).toBeLessThanOrEqual(1);
    }
    const info = native().runtimeInfo();
    if (!info.cudaAvailable) {
      const bad = path.join(tmp, 'fixtures-bad.jsonl');
      const q = run(dist, 'cuda', 'none', bad);
      expect(q.status).toBe(1);
      const line = JSON.parse(readFileSync(bad, 'utf8').trim());
      expect(line).toMatchObject({ device: 'cuda', passed: 0, failed: 1 });
      expect(line.failures[0]).toBe(`ERR_WAN_NO_CUDA: parity on cuda: ${info.cudaUnavailableReason} (libtorch ${info.libtorchVersion})`);
    }
  });
});

// bench/device/run.sh on stand-in binaries: each phase's control flow (call budget, kernel-check
// fallback) without a GPU, a build or torch. The device tool cuts a call off at its limit and
// returns only what is under $OUT by then, so run.sh keeps to CALL_BUDGET_S.
describe('bench/device/run.sh (the device call script) on stand-in binaries', () => {
  const offloadRow = { model: 'small', width: 64, height: 64, frames: 5, dit_step: { seconds_min: 1 }, dit_step_offload: { offload: 'model', seconds_min: 2, matches_resident: true } };
  // A work folder whose build/Release holds the given shell scripts; run.sh then needs no build.
  const workWith = (name: string, tools: Record<string, string>) => {
    const work = path.join(tmp, name);
    const release = path.join(work, 'build', 'Release');
    mkdirSync(release, { recursive: true });
    for (const [tool, body] of Object.entries(tools)) writeFileSync(path.join(release, tool), `#!/bin/sh\n${body}\n`, { mode: 0o755 });
    return work;
  };
  const runSh = (work: string, phases: string[], env: Record<string, string> = {}) =>
    spawnSync('bash', [path.join(ROOT, 'bench', 'device', 'run.sh'), ...phases], {
      env: { ...process.env, WAN_DEVICE: 'cpu', WAN_DEVICE_WORK: work, OUT: path.join(work, 'out'), PYTHON: 'python3', DIFFUSERS_SRC: path.join(work, 'none'), WAN_FUSED_KERNELS: '', ...env },
      encoding: 'utf8',
      timeout: 60_000,
    });

  it('stops a phase that overruns its call budget, skips the rest, and still leaves its results and the report in $OUT', () => {
    // A wan_bench that prints its JSON line, then hangs: a phase that would overrun the call.
    const work = workWith('budget', { wan_bench: `echo '${JSON.stringify(offloadRow)}'\nexec sleep 120` });
    const started = Date.now();
    const p = runSh(work, ['offload', 'bench-sdpa', 'report'], { CALL_BUDGET_S: '8', REPORT_RESERVE_S: '2' });
    const seconds = (Date.now() - started) / 1000;
    expect(p.status, p.stdout + p.stderr).toBe(0);
    expect(seconds).toBeLessThan(30); // the stand-in alone would take 240 s
    expect(p.stdout).toMatch(/out of call time: stopped after \d+ s: wan_bench/);
    expect(p.stdout).toMatch(/out of call time: not started: wan_bench/); // offload's second mode
    expect(p.stdout).toMatch(/phase bench-sdpa skipped/);
    // The stopped command's line came back (packed in $OUT/results.tar.gz: the device tool brings back
    // at most 8 files), without the script's own log lines mixed in.
    const packed = execFileSync('tar', ['-xzOf', path.join(work, 'out', 'results.tar.gz'), './offload.jsonl'], { encoding: 'utf8' });
    const lines = packed.trim().split('\n');
    expect(lines.map((l) => JSON.parse(l))).toEqual([offloadRow]);
    expect(readFileSync(path.join(work, 'out', 'summary.md'), 'utf8')).toContain('| small 64x64x5 | model | 1 s | 2 s |');
  });

  it('a failed kernel check turns the fused kernels off for the later phases and calls instead of ending the call', () => {
    // wan_bench reports the WAN_FUSED_KERNELS it ran under; wan_run's kernel check fails, later passes.
    const bench = `echo "{\\"model\\":\\"a14b\\",\\"width\\":832,\\"height\\":480,\\"frames\\":81,\\"switch\\":\\"\${WAN_FUSED_KERNELS:-unset}\\"}"`;
    const work = workWith('kernel', { wan_bench: bench, wan_run: `echo '{"kernel_check":"FAIL"}'\nexit 1` });
    const cuda = { WAN_DEVICE: 'cuda' };
    const offloadLines = () => readFileSync(path.join(work, 'results', 'offload.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l).switch);

    const first = runSh(work, ['kernel', 'offload'], cuda);
    expect(first.status, first.stdout + first.stderr).toBe(0);
    expect(first.stdout).toMatch(/kernel check FAILED: the fused kernels are off/);
    expect(offloadLines()).toEqual(['0', '0']); // 'model' and 'sequential'

    const second = runSh(work, ['offload'], cuda); // a later call: the marker carries the switch
    expect(second.stdout).toMatch(/an earlier kernel check failed: WAN_FUSED_KERNELS=0/);
    expect(offloadLines()).toEqual(['0', '0', '0', '0']);

    writeFileSync(path.join(work, 'build', 'Release', 'wan_run'), `#!/bin/sh\necho '{"kernel_check":"pass"}'\n`, { mode: 0o755 });
    const third = runSh(work, ['kernel', 'offload'], cuda);
    expect(third.status, third.stdout + third.stderr).toBe(0);
    expect(offloadLines()).toEqual(['0', '0', '0', '0', 'unset', 'unset']);
  });
});
