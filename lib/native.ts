// Loads the native addon (node-gyp-build: prebuilds/<platform>-<arch>/ first when PREBUILDS_ONLY,
// else build/Release then prebuilds) and, next to it, the SentencePiece tokenizer addon.
import { existsSync, readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

import type { NativeBinding, NativeTokenizerBinding } from '../binding.js';
import { WanError } from './errors.js';

const require = createRequire(import.meta.url);

/** The package root: the nearest folder above this file whose package.json is wan-video's. */
export function packageRoot(): string {
  let dir = path.dirname(fileURLToPath(import.meta.url));
  for (;;) {
    const pkg = path.join(dir, 'package.json');
    if (existsSync(pkg)) {
      try {
        if (JSON.parse(readFileSync(pkg, 'utf8')).name === 'wan-video') return dir;
      } catch {
        // keep looking
      }
    }
    const up = path.dirname(dir);
    if (up === dir) throw new Error('wan-video: cannot find the package root');
    dir = up;
  }
}

let cached: { binding: NativeBinding; file: string } | undefined;

function describeLoadFailure(tried: string[], err: unknown): WanError {
  const message = err instanceof Error ? err.message : String(err);
  // The library the loader could not find, as its message names it (e.g. libtorch_cpu.so.1.13).
  const missing = /(lib(?:torch|c10)[\w-]*\.so[\w.]*)/.exec(message)?.[1];
  // node-gyp-build found no addon at all: nothing was built here, most often because npm did not run
  // the install script that builds it.
  const noneBuilt = /No native build was found/.test(message);
  const build =
    'Build it from source with `npm rebuild wan-video` (in a clone: `npm run build:native`); ' +
    'this needs cmake, a C++17 compiler (C++20 for libtorch 2.14 and later) and libtorch (`apt-get install libtorch-dev`, or a pip torch 2.x).';
  const lines = [
    `wan-video: cannot load the native addon (${message.split('\n')[0]}).`,
    `Tried: ${tried.join(', ')}.`,
    missing
      ? `The addon was found but not the libtorch it was built against: ${missing} is missing. Install that libtorch ` +
        `(${/\.so\.1\.13/.test(missing) ? 'Debian/Ubuntu: `apt-get install libtorch-dev`, libtorch 1.13' : 'the pip torch or unpacked libtorch it was built with'}), ` +
        'or build against the one you have: `npm rebuild wan-video` (LIBTORCH=/path/to/libtorch to choose it).'
      : noneBuilt
        ? 'No addon was built in this installation: the install script that builds it did not run (npm install --ignore-scripts, ' +
          'WAN_VIDEO_SKIP_INSTALL=1, or an `allowScripts` entry in your package.json that denies wan-video: make it true), ' +
          `or it failed and its output said why. ${build}`
        : build,
  ];
  return new WanError('ERR_WAN_NO_LIBTORCH', lines.join('\n'), { cause: err });
}

/** The addon, loaded once. Set WAN_VIDEO_ADDON to a .node file to load that one instead. */
export function native(): NativeBinding {
  if (cached) return cached.binding;
  const tried: string[] = [];
  try {
    let file = process.env.WAN_VIDEO_ADDON;
    if (file) {
      tried.push(`WAN_VIDEO_ADDON=${file}`);
    } else {
      const root = packageRoot();
      tried.push(`node-gyp-build(${root}): build/Release, prebuilds/${process.platform}-${process.arch}`);
      const gypBuild = require('node-gyp-build') as { resolve(dir: string): string };
      file = gypBuild.resolve(root);
      tried.push(`found ${file}`);
    }
    const binding = require(file) as NativeBinding;
    cached = { binding, file };
    return binding;
  } catch (err) {
    throw describeLoadFailure(tried, err);
  }
}

/** Path of the loaded addon file. */
export function nativePath(): string {
  native();
  return cached!.file;
}

let tokenizerCached: NativeTokenizerBinding | undefined;

/** The SentencePiece tokenizer addon, built beside the main one (see CMakeLists.txt for why apart). */
export function nativeTokenizer(): NativeTokenizerBinding {
  if (tokenizerCached) return tokenizerCached;
  const file = process.env.WAN_VIDEO_TOKENIZER_ADDON ?? path.join(path.dirname(nativePath()), 'tokenizer', 'wan_tokenizer.node');
  try {
    tokenizerCached = require(file) as NativeTokenizerBinding;
    return tokenizerCached;
  } catch (err) {
    throw new WanError(
      'ERR_WAN_NO_LIBTORCH',
      `wan-video: cannot load the tokenizer addon ${file} (${err instanceof Error ? err.message.split('\n')[0] : err}). ` +
        'It is built when libsentencepiece is installed (`apt-get install libsentencepiece-dev pkgconf`, then `npm rebuild wan-video`); ' +
        'without it, pass promptEmbeds instead of prompts.',
      { cause: err },
    );
  }
}
