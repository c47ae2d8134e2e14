// The parity runner: every case of every manifest.json under a folder in the wan-tiny fixture format,
// run in float32 through the native entry points (on the CPU, or a GPU with TF32 off), compared with
// the reference outputs under the manifest's float32 tolerance. Used by `wan-video parity DIR`, by
// the tests and by bench/device/run.sh (the GPU path: every component and whole generations in each
// offload mode against the same golden outputs).
import { existsSync, readdirSync, statSync } from 'node:fs';
import path from 'node:path';

import type { TensorData } from '../binding.js';
import type { Offload } from './types.js';
import { type FixtureCase, loadCase, readManifest } from './fixtures.js';
import { badArgument, WanError } from './errors.js';
import { describeValue } from './options.js';
import { native } from './native.js';
import { runtimeInfo } from './runtime.js';
import { headRows, maxRelError, nonZeroPastRow, sameShape, toFloat64 } from './tensor.js';
import { planesToFrames } from './frames.js';

export interface ParityCheck {
  /** e.g. 't2v-a14b-tiny/transformer_forward:output' */
  name: string;
  /** measured max|out-ref|/max|ref| (or max abs error / mismatches for the exact checks) */
  error: number;
  tolerance: number;
  metric: 'rel' | 'abs' | 'exact';
  ok: boolean;
}

export interface ParityOptions {
  /** 'cpu' (default), 'cuda' or 'cuda:N'. On a GPU, TF32 is turned off for the whole process. */
  device?: string;
  /** Memory mode of the pipeline cases (default 'none'). */
  offload?: Offload;
}

export interface ParityReport {
  checks: ParityCheck[];
  failures: string[];
  ok: boolean;
}

function findManifests(root: string): string[] {
  if (existsSync(path.join(root, 'manifest.json'))) return [root];
  const out: string[] = [];
  for (const entry of readdirSync(root)) {
    const p = path.join(root, entry);
    if (statSync(p).isDirectory()) out.push(...findManifests(p));
  }
  return out;
}

function exactMismatches(out: TensorData, ref: TensorData): number {
  const a = toFloat64(out);
  const b = toFloat64(ref);
  if (!sameShape(out, ref)) return Math.max(a.length, b.length, 1);
  let n = 0;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) n++;
  return n;
}

/** The uint8 frames [B, F, H, W, 3] lib/video.ts makes of a float video [B, 3, F, H, W] (Video.fromFloat's conversion, row by row). */
function framesOf(video: TensorData): TensorData {
  const [b, , f, h, w] = video.shape;
  const per = 3 * f * h * w;
  const data = new Uint8Array(b * per);
  for (let i = 0; i < b; i++) {
    data.set(planesToFrames((video.data as Float32Array).subarray(i * per, (i + 1) * per), f, h, w), i * per);
  }
  return { dtype: 'uint8', shape: [b, f, h, w, 3], data };
}

function maxAbsError(out: TensorData, ref: TensorData): number {
  const a = toFloat64(out);
  const b = toFloat64(ref);
  let m = sameShape(out, ref) ? 0 : Infinity;
  for (let i = 0; i < Math.min(a.length, b.length); i++) m = Math.max(m, Math.abs(a[i] - b[i]));
  return m;
}

class CaseChecker {
  readonly checks: ParityCheck[] = [];
  constructor(private readonly c: FixtureCase) {}
  get tol(): number {
    return Number(this.c.json.tolerance.fp32);
  }
  rel(what: string, out: TensorData | undefined, ref: TensorData, tolerance = this.tol): void {
    const error = out ? maxRelError(out, ref) : Infinity;
    this.checks.push({ name: `${this.c.family}/${this.c.case}:${what}`, error, tolerance, metric: 'rel', ok: error <= tolerance });
  }
  abs(what: string, out: TensorData | undefined, ref: TensorData, tolerance: number): void {
    const error = out ? maxAbsError(out, ref) : Infinity;
    this.checks.push({ name: `${this.c.family}/${this.c.case}:${what}`, error, tolerance, metric: 'abs', ok: error <= tolerance });
  }
  exact(what: string, out: TensorData | undefined, ref: TensorData): void {
    const error = out ? exactMismatches(out, ref) : Infinity;
    this.checks.push({ name: `${this.c.family}/${this.c.case}:${what}`, error, tolerance: 0, metric: 'exact', ok: error === 0 });
  }
  /** Prompt embeddings: rows 0..63 against the fixture's `*_head` (the manifest's bound), and the
   *  rows past them, up to the padded length, exactly 0 (as the manifest says they are). */
  embeddings(what: string, out: TensorData | undefined, head: TensorData, length: number): void {
    const long = out !== undefined && out.shape.length === 3 && out.shape[1] === length;
    this.rel(`${what}_head`, long ? headRows(out, head.shape[1]) : undefined, head);
    const error = long ? nonZeroPastRow(out, head.shape[1]) : Infinity;
    this.checks.push({ name: `${this.c.family}/${this.c.case}:${what}_tail`, error, tolerance: 0, metric: 'exact', ok: error === 0 });
  }
}

async function runCase(c: FixtureCase, options: Required<ParityOptions>): Promise<ParityCheck[]> {
  const check = new CaseChecker(c);
  const n = native();
  const load = { device: options.device, dtype: 'float32' } as const;
  const p = c.json.params ?? {};
  switch (c.kind) {
    case 'randn': {
      for (const e of p.entries as Array<{ tensor: string; seed: number; shape: number[] }>) {
        check.exact(e.tensor, n.randn(e.seed, e.shape), c.tensors[e.tensor]);
      }
      break;
    }
    case 'transformer_forward': {
      const folders: string[] = p.model_folders ?? ['transformer'];
      for (const [i, folder] of folders.entries()) {
        const model = await n.loadTransformer(path.join(c.modelDir, folder), load);
        try {
          const { output } = await model.forward({
            hiddenStates: c.input('hidden_states'),
            timestep: c.input('timestep'),
            encoderHiddenStates: c.input('encoder_hidden_states'),
          });
          check.rel(i === 0 ? 'output' : `output_${i + 1}`, output, c.output(i === 0 ? 'output' : `output_${i + 1}`));
        } finally {
          model.dispose();
        }
      }
      break;
    }
    case 'text_encoder': {
      const enc = await n.loadTextEncoder(path.join(c.modelDir, 'text_encoder'), load);
      try {
        const r = await enc.encode(c.input('input_ids'), c.input('attention_mask'));
        check.rel('last_hidden_state', r.lastHiddenState, c.output('last_hidden_state'));
        check.embeddings('prompt_embeds', r.promptEmbeds, c.output('prompt_embeds_head'), p.max_sequence_length);
      } finally {
        enc.dispose();
      }
      break;
    }
    case 'vae_encode': {
      const vae = await n.loadVae(path.join(c.modelDir, 'vae'), load);
      try {
        const r = await vae.encode(c.input('video'), { tiled: false });
        check.rel('latent_mean', r.mean, c.output('latent_mean'));
        check.rel('latent_logvar', r.logvar, c.output('latent_logvar'));
        check.rel('latent_normalized', r.normalized, c.output('latent_normalized'));
      } finally {
        vae.dispose();
      }
      break;
    }
    case 'vae_decode': {
      const vae = await n.loadVae(path.join(c.modelDir, 'vae'), load);
      try {
        const r = await vae.decode(c.input('latents'), { tiled: false });
        check.rel('latents_denormalized', r.denormalized, c.output('latents_denormalized'));
        check.rel('video', r.video, c.output('video'));
      } finally {
        vae.dispose();
      }
      break;
    }
    case 'scheduler': {
      const r = await n.runScheduler(
        { configPath: path.join(c.modelDir, 'scheduler', 'scheduler_config.json'), sampler: 'unipc', steps: p.num_inference_steps, shift: p.flow_shift },
        c.input('sample'),
        c.input('model_outputs'),
      );
      check.exact('timesteps', r.timesteps, c.output('timesteps'));
      check.abs('sigmas', r.sigmas, c.output('sigmas'), 1e-7);
      check.rel('prev_samples', r.prevSamples, c.output('prev_samples'));
      break;
    }
    case 'pipeline': {
      const pipe = await n.loadPipeline(c.modelDir, { ...load, vaeDtype: 'float32', offload: options.offload });
      try {
        const hasImage = c.json.inputs.image !== undefined;
        const r = await pipe.generate({
          promptIds: c.input('prompt_input_ids'),
          promptMask: c.input('prompt_attention_mask'),
          negativeIds: c.input('negative_prompt_input_ids'),
          negativeMask: c.input('negative_prompt_attention_mask'),
          latents: c.input('latents'),
          image: hasImage ? c.input('image') : undefined,
          width: p.width,
          height: p.height,
          numFrames: p.num_frames,
          steps: p.num_inference_steps,
          guidanceScale: p.guidance_scale,
          guidanceScale2: p.guidance_scale_2 ?? undefined,
          shift: p.flow_shift,
          sampler: 'unipc',
          recordSteps: true,
          tiled: 'off',
          returnFloat: true,
        });
        check.embeddings('prompt_embeds', r.promptEmbeds, c.output('prompt_embeds_head'), p.max_sequence_length);
        check.embeddings('negative_prompt_embeds', r.negativePromptEmbeds, c.output('negative_prompt_embeds_head'), p.max_sequence_length);
        check.exact('timesteps', r.timesteps, c.output('timesteps'));
        check.abs('sigmas', r.sigmas, c.output('sigmas'), 1e-7);
        check.exact('expert_per_step', r.expertPerStep, c.output('expert_per_step'));
        check.exact('model_timestep_per_step', r.modelTimestepPerStep, c.intermediate('model_timestep_per_step'));
        check.rel('latents_per_step', r.latentsPerStep, c.output('latents_per_step'));
        check.rel('final_latents', r.latents, c.output('final_latents'));
        check.rel('decoder_input_latents', r.decoderInput, c.output('decoder_input_latents'));
        check.rel('video', r.video, c.output('video'));
        // The native uint8 frames, bit for bit those the JS conversion makes of the float video.
        if (r.video) check.exact('frames', r.frames, framesOf(r.video));
        if (c.json.intermediates?.condition) check.rel('condition', r.condition, c.intermediate('condition'));
        if (c.json.intermediates?.latent_condition) check.rel('latent_condition', r.condition, c.intermediate('latent_condition'));
      } finally {
        pipe.dispose();
      }
      break;
    }
    default:
      throw new Error(`unknown case kind '${c.kind}'`);
  }
  return check.checks;
}

/** Runs every case under `dir`; `log` gets one line per check. */
export async function runParity(dir: string, log: (line: string) => void = () => {}, options: ParityOptions = {}): Promise<ParityReport> {
  const opts: Required<ParityOptions> = { device: options.device ?? 'cpu', offload: options.offload ?? 'none' };
  if (opts.device !== 'cpu') {
    // One clear error up front rather than one per case.
    const name = opts.device === 'cuda' ? 'cuda:0' : opts.device;
    const info = runtimeInfo();
    if (!info.devices.some((d) => d.name === name)) {
      const why = info.cudaAvailable ? `${info.devices.length - 1} CUDA device(s) are visible` : `${info.cudaUnavailableReason} (libtorch ${info.libtorchVersion})`;
      throw new WanError('ERR_WAN_NO_CUDA', `parity on ${opts.device}: ${why}`);
    }
    native().setAllowTF32(false);
  }
  const checks: ParityCheck[] = [];
  const failures: string[] = [];
  if (typeof dir !== 'string' || !existsSync(dir) || !statSync(dir).isDirectory()) {
    throw badArgument('dir', `is ${describeValue(dir)}, which is not a folder`, 'a folder of golden fixtures (manifest.json), e.g. test/fixtures/wan-tiny in a clone of the repository');
  }
  const roots = findManifests(path.resolve(dir));
  if (roots.length === 0) {
    failures.push(`no manifest.json under ${dir}`);
    log(`FAIL no manifest.json under ${dir}`);
  }
  for (const root of roots) {
    for (const entry of await readManifest(root)) {
      const label = `${entry.family}/${entry.case}`;
      try {
        const c = await loadCase(root, entry);
        for (const r of await runCase(c, opts)) {
          checks.push(r);
          const err = r.metric === 'exact' ? `${r.error} mismatches` : r.error.toExponential(2);
          const tol = r.metric === 'exact' ? 'exact' : `${r.metric} ${r.tolerance.toExponential(1)}`;
          log(`${r.ok ? 'ok  ' : 'FAIL'} ${r.name.padEnd(58)} ${err.padStart(12)}  (tolerance ${tol})`);
          if (!r.ok) failures.push(r.name);
        }
      } catch (err) {
        const msg = err instanceof Error ? err.message : String(err);
        log(`FAIL ${label}: could not run: ${msg}`);
        failures.push(`${label}: ${msg}`);
      }
    }
  }
  log(`parity (${opts.device}, float32, offload ${opts.offload}): ${checks.filter((c) => c.ok).length} passed, ${failures.length} failed`);
  return { checks, failures, ok: failures.length === 0 && checks.length > 0 };
}
