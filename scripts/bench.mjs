#!/usr/bin/env node
// `npm run bench [-- wan_bench args]`: runs the native benchmark (native/tools/wan_bench.cpp).
// Without arguments: the small config on the CPU (a CI smoke test, seconds on 2 cores). On a GPU:
//   npm run bench -- --model a14b --device cuda --width 1280 --height 720 --frames 81
// The binary is found at $WAN_BENCH_BIN, next to $WAN_VIDEO_ADDON, or in build/Release (npm run build:native).
import { existsSync } from 'node:fs';
import path from 'node:path';
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const candidates = [
  process.env.WAN_BENCH_BIN,
  process.env.WAN_VIDEO_ADDON && path.join(path.dirname(process.env.WAN_VIDEO_ADDON), 'wan_bench'),
  path.join(root, 'build', 'Release', 'wan_bench'),
].filter(Boolean);
const bin = candidates.find((p) => existsSync(p));
if (!bin) {
  console.error(`wan-video bench: wan_bench not found (looked at ${candidates.join(', ')}); build it with npm run build:native`);
  process.exit(1);
}
const args = process.argv.slice(2);
const r = spawnSync(bin, args.length ? args : ['--model', 'small', '--device', 'cpu'], { stdio: 'inherit' });
process.exit(r.status ?? 1);
