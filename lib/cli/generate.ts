// `wan-video generate`: load a model folder, generate one video, save it. Ctrl-C aborts through an
// AbortController (the pipeline stops between steps, an encode in progress is killed) and exits 130.
import { existsSync } from 'node:fs';
import path from 'node:path';

import { LATENTS_KEPT_HINT, WanError } from '../errors.js';
import { ffmpegVersion } from '../ffmpeg.js';
import { packageRoot } from '../native.js';
import { WanPipeline } from '../pipeline.js';
import type { Device, Dtype, GenerateOptions, LoadOptions, ModelFamily, Offload, ProgressEvent, Sampler } from '../types.js';
import type { TensorData } from '../../binding.js';
import { latentsFileFor, saveLatents } from '../latents-file.js';
import { outputTarget, type Video } from '../video.js';
import { formatDuration, printJsonLine, ProgressReporter } from './progress.js';

export interface GenerateFlags {
  model?: string;
  prompt: string;
  negativePrompt?: string;
  image?: string;
  size?: { width: number; height: number };
  frames?: number;
  steps?: number;
  guidance?: number;
  guidance2?: number;
  shift?: number;
  sampler?: Sampler;
  seed?: number;
  device?: Device;
  dtype?: Dtype;
  offload?: Offload;
  t5Cpu?: boolean;
  out: string;
  json?: boolean;
}

export const REAL_MODELS = [
  'Wan-AI/Wan2.2-T2V-A14B-Diffusers',
  'Wan-AI/Wan2.2-I2V-A14B-Diffusers',
  'Wan-AI/Wan2.2-TI2V-5B-Diffusers',
];

/** The random-weight model shipped in the package, used when --model is not given. */
/** Size, frames and steps of `generate` with the bundled tiny model unless flags say otherwise. */
export const BUNDLED_DEFAULTS = { width: 160, height: 96, numFrames: 17, steps: 10 } as const;

export function bundledModelDir(): string {
  return path.join(packageRoot(), 'models', 'tiny');
}

export const EXIT_ABORTED = 130;

/**
 * Ctrl-C aborts `controller` (the work stops at its next check); a second Ctrl-C exits at once.
 * Returns the function that removes the handler.
 */
export function abortOnInterrupt(controller: AbortController, reporter: ProgressReporter): () => void {
  let interrupts = 0;
  const onSigint = () => {
    interrupts++;
    if (interrupts > 1) process.exit(EXIT_ABORTED); // a second Ctrl-C does not wait
    reporter.note('interrupted: stopping (Ctrl-C again to quit at once)');
    controller.abort();
  };
  process.on('SIGINT', onSigint);
  return () => process.off('SIGINT', onSigint);
}

/** Runs the command; resolves to the process exit code. */
export async function runGenerate(flags: GenerateFlags): Promise<number> {
  const reporter = new ProgressReporter(flags.json ? 'json' : process.stderr.isTTY ? 'tty' : 'plain');
  const controller = new AbortController();
  const removeInterruptHandler = abortOnInterrupt(controller, reporter);
  let pipe: WanPipeline | undefined;
  let video: Video | undefined;
  const started = Date.now();
  try {
    // Everything that can be checked before the (long) load and generation is checked first.
    const target = outputTarget(flags.out, '--out');
    if (target.kind !== 'png') await ffmpegVersion();
    if (flags.image !== undefined && !existsSync(flags.image)) {
      throw new WanError('ERR_WAN_BAD_ARGUMENT', `option '--image' names '${flags.image}', which does not exist`);
    }
    let modelDir = flags.model;
    // The bundled model's own defaults: the family's 1280x720x81 would take the CPU minutes.
    let small: { width?: number; height?: number; numFrames?: number; steps?: number } = {};
    if (modelDir === undefined) {
      modelDir = bundledModelDir();
      small = BUNDLED_DEFAULTS;
      reporter.note(
        `No --model given: using the bundled tiny model (${modelDir}). It has random weights and exists to test ` +
          `the installation; its output is noise. For real videos download a Diffusers checkpoint ` +
          `(${REAL_MODELS.join(', ')}) and pass its folder with --model.`,
      );
    }

    pipe = await WanPipeline.load(modelDir, {
      device: flags.device,
      dtype: flags.dtype,
      offload: flags.offload,
      textEncoderDevice: flags.t5Cpu ? 'cpu' : undefined,
      onProgress: (e) => reporter.event(e),
      signal: controller.signal,
    });
    pipe.on('progress', (e) => reporter.event(e));
    video = await pipe.generate({
      prompt: flags.prompt,
      negativePrompt: flags.negativePrompt,
      image: flags.image,
      width: flags.size?.width ?? small.width,
      height: flags.size?.height ?? small.height,
      numFrames: flags.frames ?? small.numFrames,
      steps: flags.steps ?? small.steps,
      guidanceScale: flags.guidance,
      guidanceScale2: flags.guidance2,
      shift: flags.shift,
      sampler: flags.sampler,
      seed: flags.seed,
      signal: controller.signal,
    });
    reporter.stop();
    reporter.note(`saving ${flags.out}`);
    await video.save(flags.out, { signal: controller.signal });
    const out = path.resolve(flags.out);
    const elapsedMs = Date.now() - started;
    if (flags.json) {
      printJsonLine('done', {
        out, family: pipe.family, width: video.width, height: video.height, numFrames: video.numFrames, fps: video.fps, elapsedMs,
        seed: video.settings?.seed, attentionBackend: video.settings?.attentionBackend,
      });
    } else {
      process.stderr.write(
        `wrote ${out} (${pipe.family}, ${video.width}x${video.height}, ${video.numFrames} frames at ${video.fps} fps, seed ${video.settings?.seed}) in ${formatDuration(elapsedMs)}` +
          `${video.settings?.attentionBackend ? `; attention: ${video.settings.attentionBackend}` : ''}\n`,
      );
    }
    return 0;
  } catch (err) {
    reporter.stop();
    const aborted = controller.signal.aborted || (err instanceof WanError && err.code === 'ERR_WAN_ABORTED');
    // Denoised but not saved (the decode or the save failed, or was interrupted): keep the latents,
    // so that `wan-video decode` can finish the video without generating it again.
    const latents = (err as WanError)?.latents ?? video?.latents;
    const outOfMemory = err instanceof WanError && err.code === 'ERR_WAN_OOM';
    const kept = latents && pipe ? await keepLatents(latents, flags, pipe.family, video?.fps ?? pipe.defaults.fps, outOfMemory) : undefined;
    reportError(err, flags.json === true, kept);
    return aborted ? EXIT_ABORTED : 1;
  } finally {
    removeInterruptHandler();
    try {
      await pipe?.dispose();
    } catch {
      // the result is already decided; a failing dispose must not change it
    }
  }
}

/** Where a failed generation's latents were kept, and the command that finishes the video. */
export interface KeptLatents {
  latentsFile: string;
  finish: string;
}

/** Saves the denoised latents beside --out; undefined (and a note) when that fails too. */
async function keepLatents(latents: TensorData, flags: GenerateFlags, family: ModelFamily, fps: number, outOfMemory: boolean): Promise<KeptLatents | undefined> {
  const file = latentsFileFor(flags.out);
  try {
    await saveLatents(file, latents, { family, fps });
  } catch (err) {
    process.stderr.write(`wan-video: could not keep the denoised latents either: ${(err as Error).message}\n`);
    return undefined;
  }
  return { latentsFile: path.resolve(file), finish: finishCommand(file, flags, outOfMemory) };
}

/**
 * The `wan-video decode` command that finishes a kept generation: it decodes as generate did (the
 * same frames), or in tiles (less memory) when the generation ran out of memory.
 */
export function finishCommand(file: string, flags: Pick<GenerateFlags, 'model' | 'device' | 'out'>, outOfMemory: boolean): string {
  const arg = (s: string) => (/^[\w@%+=:,./-]+$/.test(s) ? s : `'${s.replace(/'/g, "'\\''")}'`);
  return ['wan-video decode', arg(file), flags.model !== undefined ? `--model ${arg(flags.model)}` : '',
    flags.device !== undefined ? `--device ${flags.device}` : '', `--out ${arg(flags.out)}`, outOfMemory ? '--tiled' : ''].filter(Boolean).join(' ');
}

/** Prints an error for people (stderr) or scripts (a JSON line), with where the latents were kept. */
export function reportError(err: unknown, json: boolean, kept?: KeptLatents): void {
  const code = err instanceof WanError ? err.code : ((err as { code?: string })?.code ?? 'ERR_WAN_INTERNAL');
  let message = err instanceof Error ? err.message : String(err);
  // The library's hint names its API; the command line has its own.
  if (kept) message = `${message.replace(LATENTS_KEPT_HINT, '')} The denoised latents were saved in ${kept.latentsFile}; finish the video with: ${kept.finish}`;
  if (json) printJsonLine('error', { code, message, ...kept });
  process.stderr.write(`wan-video: error ${code}: ${message}\n`);
}
