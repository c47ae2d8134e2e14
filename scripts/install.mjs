#!/usr/bin/env node
// npm "install" script of wan-video. Uses a prebuilt addon from prebuilds/<platform>-<arch>/ when it
// loads on this machine (it needs the libtorch it was built against); otherwise builds from source
// with cmake-js (not node-gyp-build's CLI, which falls back to node-gyp and our build is CMake).
import { spawnSync } from 'node:child_process';
import { existsSync, rmSync } from 'node:fs';
import { createRequire } from 'node:module';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const require = createRequire(path.join(root, 'package.json'));
const log = (line) => console.error(`wan-video: ${line}`);

// 1. A prebuild that loads. Tried in a child process: a failed dlopen must not take this one down.
function prebuildLoads() {
  const tuple = path.join(root, 'prebuilds', `${process.platform}-${process.arch}`);
  if (!existsSync(tuple)) return false;
  const probe = `const b = require('node-gyp-build'); const f = b.resolve(${JSON.stringify(root)}); require(f).runtimeInfo(); console.log(f);`;
  const r = spawnSync(process.execPath, ['-e', probe], { cwd: root, env: { ...process.env, PREBUILDS_ONLY: '1' }, encoding: 'utf8' });
  if (r.status === 0) {
    log(`using the prebuilt addon ${r.stdout.trim()}`);
    return true;
  }
  const why = (r.stderr || '').split('\n').find((l) => /Error|error|cannot/.test(l)) ?? `exit ${r.status}`;
  log(`the prebuilt addon in ${tuple} does not load here (${why.trim()}); building from source`);
  return false;
}

// 2. Build from source. The C++ test tools are built only in a development clone.
function buildFromSource() {
  let cmakeJs;
  try {
    cmakeJs = require.resolve('cmake-js/bin/cmake-js');
  } catch {
    log('cmake-js is not installed (it is a dependency of wan-video; was the install run with --omit?)');
    return false;
  }
  const clone = existsSync(path.join(root, 'test')) || existsSync(path.join(root, '.git'));
  // Configure afresh: a cache from an earlier build would keep the libtorch (Torch_DIR) and the
  // sentencepiece it found then, so `npm rebuild` after installing one would change nothing.
  // (Objects already built stay; ninja rebuilds what the new configuration changes.)
  rmSync(path.join(root, 'build', 'CMakeCache.txt'), { force: true });
  // 'build', not 'compile': compile retries a failed build as a full rebuild, which doubles the
  // time and the error output and cannot fix a missing library.
  const jobs = String(os.availableParallelism?.() ?? os.cpus().length);
  const args = [cmakeJs, 'build', '--parallel', jobs, '--CDCMAKE_BUILD_TYPE=Release', `--CDWAN_BUILD_TOOLS=${clone ? 'ON' : 'OFF'}`];
  log(`building the native addon from source: node ${args.map((a) => path.basename(a)).join(' ')} (a few minutes)`);
  const r = spawnSync(process.execPath, args, { cwd: root, stdio: 'inherit' });
  return r.status === 0 && existsSync(path.join(root, 'build', 'Release', 'wan_video.node'));
}

// A libtorch the user names is built against, even where the prebuild (Debian's libtorch) loads.
const chosenTorch = ['LIBTORCH', 'Torch_DIR'].find((name) => process.env[name]);
if (['1', 'true'].includes(process.env.WAN_VIDEO_SKIP_INSTALL ?? '')) {
  log('WAN_VIDEO_SKIP_INSTALL is set: not building the native addon');
} else {
  if (chosenTorch) log(`${chosenTorch}=${process.env[chosenTorch]}: building against it, not using a prebuilt addon`);
  const ready = (!chosenTorch && prebuildLoads()) || buildFromSource();
  if (!ready) {
    console.error(`
wan-video: the native addon could not be built (the reason is above).
It needs cmake (>= 3.18) with make or ninja, pkg-config, a C++17 compiler (C++20 for libtorch >= 2.14)
and libtorch:
  - Debian/Ubuntu, CPU:  apt-get install cmake ninja-build pkgconf g++ libtorch-dev libsentencepiece-dev
  - CUDA: a pip torch 2.x with CUDA (pip install torch) is found through python3; it also needs the
    CUDA toolkit (nvcc). Or an unpacked libtorch from https://pytorch.org: LIBTORCH=/path/to/libtorch
Then install again: npm install wan-video (a package installed with --ignore-scripts: npm rebuild wan-video)
`);
    process.exit(1);
  }
}
