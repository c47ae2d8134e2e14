#!/usr/bin/env node
// The wan-video command line: a thin shell over the public API (generate, decode, info, parity).
import { readFileSync } from 'node:fs';
import path from 'node:path';

import { Command, CommanderError, Option } from 'commander';

import { packageRoot } from '../native.js';
import { runParity } from '../parity.js';
import type { Dtype, Offload, Sampler } from '../types.js';
import { runDecode, type DecodeFlags } from './decode.js';
import { runGenerate, type GenerateFlags } from './generate.js';
import { runInfo, type InfoFlags } from './info.js';
import { deviceValue, nonNegativeNumber, parseSize, positiveInt, positiveNumber, seedValue } from './options.js';
import { reportError } from './generate.js';
import { printJsonLine } from './progress.js';

const SAMPLERS: Sampler[] = ['unipc', 'euler', 'unipc-official'];
const DTYPES: Dtype[] = ['float32', 'bfloat16', 'float16'];
const OFFLOADS: Offload[] = ['none', 'model', 'sequential'];

function packageVersion(): string {
  try {
    return JSON.parse(readFileSync(path.join(packageRoot(), 'package.json'), 'utf8')).version as string;
  } catch {
    return 'unknown';
  }
}

function buildProgram(setExitCode: (code: number) => void): Command {
  const program = new Command('wan-video')
    .description('Generate videos with the Wan2.2 models (T2V-A14B, I2V-A14B, TI2V-5B) on libtorch.')
    .version(packageVersion())
    .showHelpAfterError('(run with --help for usage)')
    // Usage errors throw (see main()) instead of exiting, so that --json can report them too.
    .exitOverride();

  program
    .command('generate')
    .description('generate one video and save it (.mp4, .webm, .gif or dir/frame-%04d.png)')
    .option('--model <dir>', 'Diffusers-layout model folder (default: the bundled random-weight tiny model)')
    .requiredOption('--prompt <text>', 'what the video shows')
    .option('--negative-prompt <text>', 'what to avoid (default: the official negative prompt)')
    .option('--image <file>', 'first frame for image-to-video (I2V-A14B, TI2V-5B)')
    .option('--size <WxH>', 'width x height, e.g. 1280x704 (default: per model)', parseSize)
    .option('--frames <n>', 'number of frames, 4k+1 (default: 81, TI2V-5B 121, bundled tiny model 17)', positiveInt)
    .option('--steps <n>', 'denoising steps (default: 40, TI2V-5B 50, bundled tiny model 10)', positiveInt)
    .option('--guidance <g>', 'CFG scale (A14B: high-noise expert); 1 or less turns CFG off for both experts', nonNegativeNumber)
    .option('--guidance-2 <g>', 'A14B: CFG scale of the low-noise expert', nonNegativeNumber)
    .option('--shift <s>', 'flow shift of the sampler (default: per model)', positiveNumber)
    .addOption(new Option('--sampler <name>', 'sampler').choices(SAMPLERS))
    .option('--seed <n>', 'random seed (same seed, device and dtype: same noise as the reference)', seedValue)
    .option('--device <device>', 'cpu, cuda or cuda:N (default: cpu)', deviceValue)
    .addOption(new Option('--dtype <dtype>', 'weight/compute dtype (default: bfloat16 on CUDA, float32 on CPU)').choices(DTYPES))
    .addOption(new Option('--offload <mode>', 'GPU memory mode (default: none)').choices(OFFLOADS))
    .option('--t5-cpu', 'run the text encoder on the CPU')
    .option('--out <file>', 'output file', 'demo.mp4')
    .option('--json', 'print one JSON object per line (progress and note events, then {"event":"done"} or {"event":"error"})')
    .action(async (flags: GenerateFlags) => setExitCode(await runGenerate(flags)));

  program
    .command('decode')
    .description('finish a video from the latents `generate` kept when its decode or save failed (loads only the VAE)')
    .argument('<latents>', 'the .latents.safetensors file generate named')
    .option('--model <dir>', 'the model folder that made them (default: the bundled tiny model)')
    .option('--device <device>', 'cpu, cuda or cuda:N (default: cpu)', deviceValue)
    .option('--tiled', 'decode in tiles (less memory)')
    .option('--out <file>', 'output file', 'demo.mp4')
    .option('--json', 'print one JSON object per line (progress and note events, then {"event":"done"} or {"event":"error"})')
    .action(async (file: string, flags: DecodeFlags) => setExitCode(await runDecode(file, flags)));

  program
    .command('info')
    .description('show the runtime (libtorch, CUDA, devices, memory) and, with --model, what a model folder holds')
    .option('--model <dir>', 'model folder to describe')
    .addOption(new Option('--dtype <dtype>', 'dtype for the memory estimate').choices(DTYPES).default('bfloat16'))
    .option('--size <WxH>', 'size for the memory estimate (default: per model)', parseSize)
    .option('--frames <n>', 'frames for the memory estimate (default: per model)', positiveInt)
    .option('--t5-cpu', 'memory estimate with the text encoder on the CPU')
    .option('--json', 'print JSON objects, one per line')
    .action(async (flags: InfoFlags) => setExitCode(await runInfo(flags)));

  program
    .command('parity')
    .description('compare every component with the golden fixtures (exit 0 when all are within tolerance)')
    .argument('<dir>', 'fixtures folder holding manifest.json (e.g. test/fixtures/wan-tiny)')
    .option('--device <device>', 'cpu, cuda or cuda:N, in float32 (on a GPU with TF32 off)', deviceValue, 'cpu')
    .addOption(new Option('--offload <mode>', 'memory mode of the whole-pipeline cases').choices(OFFLOADS).default('none'))
    .action(async (dir: string, flags: { device: string; offload: Offload }) => {
      try {
        const result = await runParity(dir, (line) => process.stdout.write(`${line}\n`), flags);
        setExitCode(result.ok ? 0 : 1);
      } catch (err) {
        reportError(err, false);
        setExitCode(1);
      }
    });

  return program;
}

async function main(): Promise<void> {
  let exitCode = 0;
  const program = buildProgram((code) => (exitCode = code));
  try {
    await program.parseAsync(process.argv);
  } catch (err) {
    if (!(err instanceof CommanderError)) throw err;
    // Commander has printed its message (or the help, or the version: exit code 0) on stderr.
    // Scripts reading --json get their error line as for any other failure.
    if (err.exitCode !== 0 && process.argv.includes('--json')) {
      printJsonLine('error', { code: 'ERR_WAN_BAD_ARGUMENT', message: err.message.replace(/^error: /, '') });
    }
    exitCode = err.exitCode;
  }
  // Set, not process.exit(): stdout is flushed before the process ends.
  process.exitCode = exitCode;
}

main().catch((err) => {
  reportError(err, false);
  process.exitCode = 1;
});
