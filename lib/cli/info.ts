// `wan-video info`: what this installation runs on and, with --model, what a model folder holds
// and about how much device memory each offload mode needs for it.
import os from 'node:os';

import { ffmpegVersion } from '../ffmpeg.js';
import { FAMILY_DEFAULTS } from '../defaults.js';
import { estimateMemory, formatBytes, type MemoryEstimate } from '../memory.js';
import { describeModelFolder, type ModelFolderInfo } from '../model-folder.js';
import { runtimeInfo, type RuntimeInfo } from '../runtime.js';
import type { Dtype, Offload } from '../types.js';
import { reportError } from './generate.js';
import { printJsonLine } from './progress.js';

export interface InfoFlags {
  model?: string;
  json?: boolean;
  dtype?: Dtype;
  size?: { width: number; height: number };
  frames?: number;
  t5Cpu?: boolean;
}

function formatCount(n: number): string {
  if (n >= 1e9) return `${(n / 1e9).toFixed(2)}B`;
  if (n >= 1e6) return `${(n / 1e6).toFixed(1)}M`;
  if (n >= 1e3) return `${(n / 1e3).toFixed(1)}K`;
  return String(n);
}

/** One device of `wan-video info`: its name, then for a GPU its model, compute capability and memory. */
export function deviceLine(d: RuntimeInfo['devices'][number]): string {
  return `device     ${d.name}` + (d.model ? ` ${d.model}` : '') + (d.computeCapability ? `, compute capability ${d.computeCapability}` : '') +
    (d.totalMemory ? ` (${formatBytes(d.totalMemory)})` : '');
}

function printRuntime(info: RuntimeInfo, ffmpeg: string): void {
  const lines = [
    `libtorch   ${info.libtorchVersion} (${info.flavour} build), ${info.threads} CPU threads`,
    info.cudaAvailable
      ? `CUDA       available, fused kernels ${info.fusedKernels ? 'on' : 'off (WAN_FUSED_KERNELS=0)'}`
      : `CUDA       not available: ${info.cudaUnavailableReason}`,
    ...info.devices.map(deviceLine),
    `host RAM   ${formatBytes(os.totalmem())} total, ${formatBytes(os.freemem())} free`,
    `addon      ${info.addonPath}`,
    `ffmpeg     ${ffmpeg}`,
  ];
  process.stdout.write(`${lines.join('\n')}\n`);
}

function printModel(model: ModelFolderInfo, estimates: Record<Offload, MemoryEstimate>, request: string): void {
  const yes = (b: boolean) => (b ? 'yes' : 'no');
  const lines = [
    '',
    `model      ${model.dir}`,
    `family     ${model.family} (${model.pipelineClass})`,
    `layout     ${Object.entries(model.present).map(([k, v]) => `${k} ${yes(v)}`).join(', ')}`,
    '',
    `${'component'.padEnd(14)}${'tensors'.padStart(8)}${'parameters'.padStart(12)}${'bytes'.padStart(12)}  dtypes`,
    ...model.components.map(
      (c) =>
        `${c.name.padEnd(14)}${String(c.tensors).padStart(8)}${formatCount(c.parameters).padStart(12)}${formatBytes(c.bytes).padStart(12)}  ` +
        Object.entries(c.dtypes).map(([d, n]) => `${d} x${n}`).join(', '),
    ),
    '',
    `estimated device memory for ${request}:`,
    ...Object.values(estimates).map(
      (e) =>
        `  ${e.offload.padEnd(11)}${formatBytes(e.totalBytes).padStart(10)}  ` +
        `(weights ${formatBytes(e.weightsBytes)} + activations ${formatBytes(e.activationBytes)} + overhead ${formatBytes(e.overheadBytes)})`,
    ),
    '  (a first-order estimate, see lib/memory.ts for the formula)',
  ];
  process.stdout.write(`${lines.join('\n')}\n`);
}

/** Runs the command; resolves to the process exit code. */
export async function runInfo(flags: InfoFlags): Promise<number> {
  try {
    const runtime = runtimeInfo();
    let ffmpeg: string;
    try {
      ffmpeg = await ffmpegVersion();
    } catch {
      ffmpeg = 'not found (needed for .mp4/.webm/.gif; apt-get install ffmpeg / brew install ffmpeg)';
    }
    if (flags.json) printJsonLine('runtime', { ...runtime, hostMemory: os.totalmem(), ffmpeg });
    else printRuntime(runtime, ffmpeg);

    if (flags.model !== undefined) {
      const model = await describeModelFolder(flags.model);
      const defaults = FAMILY_DEFAULTS[model.family];
      const dtype = flags.dtype ?? 'bfloat16';
      const request = {
        width: flags.size?.width ?? defaults.width,
        height: flags.size?.height ?? defaults.height,
        numFrames: flags.frames ?? defaults.numFrames,
        dtype,
        textEncoderOnDevice: !flags.t5Cpu,
      };
      const estimates = estimateMemory(model.memoryModel, request);
      if (flags.json) {
        printJsonLine('model', {
          dir: model.dir, family: model.family, pipelineClass: model.pipelineClass, present: model.present,
          components: model.components, memoryEstimate: { request, estimates },
        });
      } else {
        printModel(model, estimates, `${request.width}x${request.height}, ${request.numFrames} frames, ${dtype}${flags.t5Cpu ? ', text encoder on the CPU' : ''}`);
      }
    }
    return 0;
  } catch (err) {
    reportError(err, flags.json === true);
    return 1;
  }
}
