#!/usr/bin/env node
// npm run prebuild — builds the addons (Release) and copies them where node-gyp-build looks
// for prebuilds: prebuilds/<platform>-<arch>/node.napi.node (runtime "node", N-API: any Node >= 20
// loads it), and the tokenizer addon beside it in tokenizer/wan_tokenizer.node (lib/native.ts loads
// it from the folder of the main addon). A prebuild only loads where the same libtorch is installed,
// so it must find libtorch in the system's library folders: one with a run path elsewhere (built
// against a pip torch, whose run path is the builder's site-packages) is refused.
// --no-build: package what build/ holds; --build-dir=DIR: take the addons from DIR/Release.
import { spawnSync } from 'node:child_process';
import { copyFileSync, existsSync, mkdirSync, rmSync } from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

import { foreignRunPaths } from './elf-runpath.mjs';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const require = createRequire(path.join(root, 'package.json'));
const buildDirArg = process.argv.find((a) => a.startsWith('--build-dir='));
const buildDir = buildDirArg ? path.resolve(buildDirArg.slice('--build-dir='.length)) : path.join(root, 'build');

if (!process.argv.includes('--no-build')) {
  const r = spawnSync(process.execPath, [require.resolve('cmake-js/bin/cmake-js'), 'compile', '--CDCMAKE_BUILD_TYPE=Release'], { cwd: root, stdio: 'inherit' });
  if (r.status !== 0) process.exit(r.status ?? 1);
}

const addon = path.join(buildDir, 'Release', 'wan_video.node');
const tokenizer = path.join(buildDir, 'Release', 'tokenizer', 'wan_tokenizer.node');
if (!existsSync(addon)) {
  console.error(`wan-video prebuild: ${addon} is missing; run npm run build:native first`);
  process.exit(1);
}
if (process.platform === 'linux') {
  for (const file of [addon, tokenizer].filter((f) => existsSync(f))) {
    const foreign = foreignRunPaths(file);
    if (foreign.length > 0) {
      console.error(`wan-video prebuild: ${file} has the run path ${foreign.join(':')}: on a user's machine it would load ` +
        `libtorch from there, or fail to. Build prebuilds against the system libtorch (Debian's libtorch-dev), ` +
        `without LIBTORCH or Torch_DIR set.`);
      process.exit(1);
    }
  }
}
const target = path.join(root, 'prebuilds', `${process.platform}-${process.arch}`);
rmSync(target, { recursive: true, force: true });
mkdirSync(path.join(target, 'tokenizer'), { recursive: true });
copyFileSync(addon, path.join(target, 'node.napi.node'));
console.log(`wan-video prebuild: ${path.relative(root, path.join(target, 'node.napi.node'))}`);
if (existsSync(tokenizer)) {
  copyFileSync(tokenizer, path.join(target, 'tokenizer', 'wan_tokenizer.node'));
  console.log(`wan-video prebuild: ${path.relative(root, path.join(target, 'tokenizer', 'wan_tokenizer.node'))}`);
} else {
  console.warn('wan-video prebuild: no tokenizer addon (libsentencepiece-dev missing at build time); prompts will need promptEmbeds');
}
