// `wan-video decode`: finish a video from the latents `wan-video generate` kept when its decode or
// save failed. Loads only the model's VAE (not the DiT experts), decodes, saves.
import path from 'node:path';

import { FAMILY_DEFAULTS } from '../defaults.js';
import { WanError } from '../errors.js';
import { ffmpegVersion } from '../ffmpeg.js';
import { loadLatents } from '../latents-file.js';
import { describeModelFolder } from '../model-folder.js';
import { native } from '../native.js';
import type { Device, ProgressEvent } from '../types.js';
import { outputTarget, Video } from '../video.js';
import { abortOnInterrupt, bundledModelDir, EXIT_ABORTED, reportError } from './generate.js';
import { printJsonLine, ProgressReporter } from './progress.js';

export interface DecodeFlags {
  model?: string;
  out: string;
  device?: Device;
  tiled?: boolean;
  json?: boolean;
}

/** Runs the command; resolves to the process exit code. */
export async function runDecode(file: string, flags: DecodeFlags): Promise<number> {
  const reporter = new ProgressReporter(flags.json ? 'json' : process.stderr.isTTY ? 'tty' : 'plain');
  const controller = new AbortController();
  const removeInterruptHandler = abortOnInterrupt(controller, reporter);
  try {
    // Made before anything is read, so that a Ctrl-C at any point cancels the decode.
    const n = native();
    const token = new n.CancelToken();
    controller.signal.addEventListener('abort', () => token.cancel(), { once: true });
    const target = outputTarget(flags.out, '--out');
    if (target.kind !== 'png') await ffmpegVersion();
    const { latents, family, fps } = await loadLatents(file);
    if (latents.shape[0] !== 1) {
      throw new WanError('ERR_WAN_BAD_ARGUMENT', `${file} holds ${latents.shape[0]} videos' latents; the command line decodes one (use WanPipeline.decode() for several)`);
    }
    const modelDir = flags.model ?? bundledModelDir();
    const model = await describeModelFolder(modelDir);
    if (family !== undefined && family !== model.family) {
      throw new WanError('ERR_WAN_BAD_ARGUMENT', `${file} holds latents of a ${family} model, but ${modelDir} is ${model.family}: pass the model that made them with --model`);
    }
    const vae = await n.loadVae(path.join(modelDir, 'vae'), { device: flags.device ?? 'cpu' }, token);
    let decoded;
    try {
      // Frames made on the worker thread: no float video crosses to JS, nothing blocks the event loop.
      decoded = await vae.decode(latents, { tiled: flags.tiled ? true : 'auto', output: 'frames' }, token, (e) => reporter.event(e as ProgressEvent));
    } finally {
      vae.dispose();
    }
    reporter.stop();
    const video = Video.fromFrames(decoded.frames, fps ?? FAMILY_DEFAULTS[model.family].fps);
    reporter.note(`saving ${flags.out}`);
    await video.save(flags.out, { signal: controller.signal });
    const out = path.resolve(flags.out);
    if (flags.json) printJsonLine('done', { out, family: model.family, width: video.width, height: video.height, numFrames: video.numFrames, fps: video.fps });
    else process.stderr.write(`wrote ${out} (${model.family}, ${video.width}x${video.height}, ${video.numFrames} frames at ${video.fps} fps)\n`);
    return 0;
  } catch (err) {
    reporter.stop();
    reportError(err, flags.json === true);
    return controller.signal.aborted || (err as WanError)?.code === 'ERR_WAN_ABORTED' ? EXIT_ABORTED : 1;
  } finally {
    removeInterruptHandler();
  }
}
