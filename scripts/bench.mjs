#!/usr/bin/env node
// `npm run bench [-- [--reference] [--python P] [--out DIR] [wan_bench args]]`: the native benchmark
// (native/tools/wan_bench.cpp: DiT step with CFG, text encode, VAE decode, random weights).
//
//   npm run bench                     CPU: the small config (a smoke test, seconds on 2 cores).
//                                     CUDA (the addon sees a GPU): the real configs, bf16: TI2V-5B
//                                     1280x704x121, T2V-A14B 832x480x81 and 1280x720x81.
//   npm run bench -- --model a14b --device cuda --width 1280 --height 720 --frames 81
//                                     one run with these wan_bench arguments.
//   npm run bench -- --reference      also times the reference modules (diffusers WanTransformer3DModel
//                                     and AutoencoderKLWan, transformers UMT5EncoderModel) at each run's
//                                     config with bench/device/reference_bench.py, then prints ours vs
//                                     reference (bench/device/report.py). Needs a python (--python or
//                                     $PYTHON, default python3) that imports torch, diffusers and
//                                     transformers. JSON lines go to --out (default: a temporary folder).
//
// The binary is found at $WAN_BENCH_BIN, next to $WAN_VIDEO_ADDON, or in build/Release (npm run build:native).
import { appendFileSync, existsSync, mkdirSync, mkdtempSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { spawnSync } from 'node:child_process';
import { fileURLToPath, pathToFileURL } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const deviceScripts = path.join(root, 'bench', 'device');

function fail(message, code = 1) {
  console.error(`wan-video bench: ${message}`);
  process.exit(code);
}

// Our own options; everything else goes to wan_bench unchanged.
function parseArgs(argv) {
  const opts = { reference: false, python: process.env.PYTHON || 'python3', out: undefined, bench: [] };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === '--reference') opts.reference = true;
    else if (a === '--python' || a === '--out') {
      if (i + 1 >= argv.length) fail(`${a} needs a value`, 2);
      opts[a.slice(2)] = argv[++i];
    } else opts.bench.push(a);
  }
  return opts;
}

function findBenchBinary() {
  const candidates = [
    process.env.WAN_BENCH_BIN,
    process.env.WAN_VIDEO_ADDON && path.join(path.dirname(process.env.WAN_VIDEO_ADDON), 'wan_bench'),
    path.join(root, 'build', 'Release', 'wan_bench'),
  ].filter(Boolean);
  const bin = candidates.find((p) => existsSync(p));
  if (!bin) fail(`wan_bench not found (looked at ${candidates.join(', ')}); build it with npm run build:native`);
  return bin;
}

// Whether the addon (built against the same libtorch as wan_bench) sees a CUDA GPU. An addon that
// does not load means no GPU run: the CPU default is the safe one.
async function cudaAvailable() {
  try {
    const { runtimeInfo } = await import(pathToFileURL(path.join(root, 'dist', 'lib', 'index.js')).href);
    return Boolean(runtimeInfo().cudaAvailable);
  } catch {
    return false;
  }
}

async function defaultConfigs() {
  if (!(await cudaAvailable())) return [['--model', 'small', '--device', 'cpu']];
  const cuda = ['--device', 'cuda', '--dtype', 'bfloat16'];
  return [
    ['--model', 'ti2v5b', ...cuda, '--width', '1280', '--height', '704', '--frames', '121'],
    ['--model', 'a14b', ...cuda, '--width', '832', '--height', '480', '--frames', '81'],
    ['--model', 'a14b', ...cuda, '--width', '1280', '--height', '720', '--frames', '81', '--iters', '1'],
  ];
}

function option(args, name) {
  const i = args.indexOf(`--${name}`);
  return i >= 0 ? args[i + 1] : undefined;
}

// The reference must be importable before minutes go into our side of the run.
function checkReferencePython(python) {
  const probe = spawnSync(python, ['-c', 'import torch, diffusers, transformers'], { encoding: 'utf8' });
  if (probe.error) fail(`--reference: cannot run ${python} (${probe.error.message}); pass --python or set PYTHON`, 2);
  if (probe.status !== 0) {
    const last = (probe.stderr || '').trim().split('\n').pop();
    fail(`--reference needs a python with torch, diffusers and transformers; ${python}: ${last}`, 2);
  }
}

// The reference run matching one of ours (its JSON record: model, size, device, dtype).
function referenceArgs(ours, benchArgs, outFile) {
  const args = [path.join(deviceScripts, 'reference_bench.py'), '--model', ours.model, '--device', ours.device, '--dtype', ours.dtype,
    '--size', `${ours.width}x${ours.height}x${ours.frames}`, '--out', outFile];
  for (const name of ['layers', 'warmup', 'iters']) {
    const v = option(benchArgs, name);
    if (v !== undefined) args.push(`--${name}`, v);
  }
  const skip = (option(benchArgs, 'skip') || '').split(',');
  const refSkip = skip.filter((s) => s === 'text' || s === 'dit');
  if (refSkip.length) args.push('--skip', refSkip.join(','));
  if (!skip.includes('vae')) args.push('--vae');
  return args;
}

async function main() {
  const opts = parseArgs(process.argv.slice(2));
  const bin = findBenchBinary();
  const configs = opts.bench.length ? [opts.bench] : await defaultConfigs();

  if (!opts.reference) {
    for (const config of configs) {
      const r = spawnSync(bin, config, { stdio: 'inherit' });
      if (r.status !== 0) process.exit(r.status ?? 1);
    }
    return;
  }

  if (!existsSync(path.join(deviceScripts, 'reference_bench.py')))
    fail(`--reference needs a clone of the wan-video repository: ${deviceScripts} is not in the npm package`, 2);
  checkReferencePython(opts.python);
  const out = opts.out ?? mkdtempSync(path.join(os.tmpdir(), 'wan-bench-'));
  mkdirSync(out, { recursive: true });
  const env = { ...process.env, PYTHONPATH: [deviceScripts, process.env.PYTHONPATH].filter(Boolean).join(path.delimiter) };
  for (const config of configs) {
    const args = config.includes('--json') ? config : [...config, '--json'];
    console.error(`wan-video bench: ours: ${args.join(' ')}`);
    const ours = spawnSync(bin, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'] });
    if (ours.status !== 0) fail(`wan_bench ${args.join(' ')} exited with ${ours.status ?? ours.signal}`);
    const line = ours.stdout.trim().split('\n').pop();
    appendFileSync(path.join(out, 'ours.jsonl'), `${line}\n`);
    const refArgs = referenceArgs(JSON.parse(line), args, path.join(out, 'reference.jsonl'));
    console.error(`wan-video bench: reference: ${refArgs.slice(1).join(' ')}`);
    const ref = spawnSync(opts.python, refArgs, { env, encoding: 'utf8', stdio: ['ignore', 'ignore', 'inherit'] });
    if (ref.status !== 0) fail(`the reference run exited with ${ref.status ?? ref.signal} (its error is above)`);
  }
  const report = spawnSync(opts.python, [path.join(deviceScripts, 'report.py'), out], { env, stdio: 'inherit' });
  console.error(`wan-video bench: JSON lines in ${out}`);
  process.exit(report.status ?? 1);
}

await main();
