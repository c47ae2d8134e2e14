// The npm package as users get it: `npm pack`, then `npm install` of the tarball into a fresh
// project (offline, from the npm cache), with a prebuilt addon in prebuilds/ so the package's own
// install script takes the prebuild path and compiles nothing; then `import('wan-video')` works.
import { spawnSync } from 'node:child_process';
import { copyFileSync, cpSync, existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';

import { nativePath } from '../lib/native.js';

const root = path.resolve(import.meta.dirname, '..');
const work = mkdtempSync(path.join(tmpdir(), 'wan-pkg-'));
afterAll(() => rmSync(work, { recursive: true, force: true }));

// The environment of a user's shell: no override of the addon, no npm lifecycle variables.
const userEnv = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('WAN_VIDEO_') && !k.startsWith('npm_')));

function run(cmd: string, args: string[], cwd: string, env = userEnv) {
  const r = spawnSync(cmd, args, { cwd, env, encoding: 'utf8', timeout: 240_000 });
  return { ...r, output: `${r.stdout}\n${r.stderr}` };
}

describe('npm package', () => {
  it('packs, installs from the tarball using the prebuild, and runtimeInfo() works from the installed package', () => {
    // 1. What `npm pack` takes from the repository: the package.json "files".
    const listing = run('npm', ['pack', '--dry-run', '--json', '--ignore-scripts'], root);
    expect(listing.status, listing.output).toBe(0);
    const files: string[] = JSON.parse(listing.stdout)[0].files.map((f: { path: string }) => f.path);
    for (const needed of ['package.json', 'binding.d.ts', 'CMakeLists.txt', 'scripts/install.mjs', 'scripts/prebuild.mjs', 'native/core/safetensors.cpp', 'native/addon/addon.cpp']) {
      expect(files, needed).toContain(needed);
    }
    expect(files.filter((f) => f.startsWith('test/') || f.startsWith('build') || f.startsWith('node_modules/'))).toEqual([]);

    // 2. A staging copy of those files, with freshly compiled dist/ and this build's addon as the prebuild.
    const stage = path.join(work, 'stage');
    for (const f of files) {
      if (f.startsWith('dist/') || f.startsWith('prebuilds/')) continue;
      mkdirSync(path.dirname(path.join(stage, f)), { recursive: true });
      copyFileSync(path.join(root, f), path.join(stage, f));
    }
    // What an earlier build emitted from a lib/ file deleted since must not ship: build-ts clears it.
    const stale = path.join(stage, 'dist', 'lib', 'removed-since.js');
    mkdirSync(path.dirname(stale), { recursive: true });
    writeFileSync(stale, 'export {};\n');
    const compiled = run(process.execPath, [path.join(root, 'scripts', 'build-ts.mjs'), path.join(stage, 'dist')], root);
    expect(compiled.status, compiled.output).toBe(0);
    expect(existsSync(stale), 'a stale output of an earlier build').toBe(false);
    expect(existsSync(path.join(stage, 'dist', 'lib', 'index.js'))).toBe(true);
    const tuple = `${process.platform}-${process.arch}`;
    mkdirSync(path.join(stage, 'prebuilds', tuple), { recursive: true });
    copyFileSync(nativePath(), path.join(stage, 'prebuilds', tuple, 'node.napi.node'));
    const tokenizer = path.join(path.dirname(nativePath()), 'tokenizer', 'wan_tokenizer.node');
    if (existsSync(tokenizer)) cpSync(path.dirname(tokenizer), path.join(stage, 'prebuilds', tuple, 'tokenizer'), { recursive: true });

    const packed = run('npm', ['pack', '--ignore-scripts', '--pack-destination', work], stage);
    expect(packed.status, packed.output).toBe(0);
    const tarball = readdirSync(work).find((f) => /^wan-video-.*\.tgz$/.test(f));
    expect(tarball).toBeDefined();

    // 3. A user's project installs it; the package's install script must find the prebuild.
    const app = path.join(work, 'app');
    mkdirSync(app);
    writeFileSync(path.join(app, 'package.json'), JSON.stringify({ name: 'app', private: true, type: 'module' }));
    const installed = run('npm', ['install', '--offline', '--no-audit', '--no-fund', '--foreground-scripts', path.join(work, tarball!)], app);
    expect(installed.status, installed.output).toBe(0);
    expect(installed.output).toMatch(/wan-video: using the prebuilt addon .*prebuilds\/.*node\.napi\.node/);
    const pkgDir = path.join(app, 'node_modules', 'wan-video');
    expect(existsSync(path.join(pkgDir, 'build')), 'nothing was compiled').toBe(false);

    // 4. The documented one-liner.
    const info = run(process.execPath, ['--input-type=module', '-e', "import('wan-video').then(m => console.log(JSON.stringify(m.runtimeInfo())))"], app);
    expect(info.status, info.output).toBe(0);
    const parsed = JSON.parse(info.stdout.trim().split('\n').pop()!);
    expect(parsed.addonPath).toBe(path.join(pkgDir, 'prebuilds', tuple, 'node.napi.node'));
    expect(parsed.libtorchVersion).toMatch(/^\d+\.\d+/);
    expect(parsed.devices[0]).toMatchObject({ type: 'cpu' });

    // CommonJS users too (require() of the ES module, Node >= 20.17).
    const cjs = run(process.execPath, ['-e', "console.log(typeof require('wan-video').runtimeInfo)"], app);
    expect(cjs.stdout.trim(), cjs.output).toBe('function');

    // 5. A TypeScript user's code type-checks against the published declarations, the package's
    // own included (skipLibCheck off): they must resolve every type they import.
    writeFileSync(path.join(app, 'main.ts'), [
      "import { WanPipeline, WanError, type TensorData, type GenerateOptions } from 'wan-video';",
      "const options: GenerateOptions = { prompt: 'a cat', steps: 2 };",
      "export async function main(): Promise<TensorData | undefined> {",
      "  const pipe = await WanPipeline.load('/models/wan');",
      "  try { return (await pipe.generate(options)).latents; } catch (e) { if (e instanceof WanError) return e.latents; throw e; }",
      "}",
    ].join('\n'));
    const tsc = createRequire(import.meta.url).resolve('typescript/bin/tsc');
    const typed = run(process.execPath, [tsc, '--noEmit', '--strict', '--skipLibCheck', 'false', '--module', 'nodenext', '--moduleResolution', 'nodenext',
      '--target', 'es2022', '--types', 'node', '--typeRoots', path.join(root, 'node_modules', '@types'), 'main.ts'], app);
    expect(typed.status, typed.output).toBe(0);

    // 6. The tokenizer addon travels beside the main one, where lib/native.ts looks for it.
    if (existsSync(tokenizer)) {
      const tok = run(process.execPath, ['-e', `const t = require(${JSON.stringify(path.join(pkgDir, 'prebuilds', tuple, 'tokenizer', 'wan_tokenizer.node'))}); console.log(typeof t.loadSentencePiece)`], app);
      expect(tok.stdout.trim(), tok.output).toBe('function');
    }
  }, 300_000);
});
