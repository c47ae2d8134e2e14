// scripts/prebuild.mjs refuses an addon whose run path leaves the system's library folders (one
// built against a pip torch carries the builder's site-packages/torch/lib). The ELF reader is
// checked on shared objects compiled here with known run paths, and on this build's addons.
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';

// @ts-expect-error: a plain .mjs script without types
import { foreignRunPaths, readRunPaths } from '../scripts/elf-runpath.mjs';

const root = path.resolve(import.meta.dirname, '..');
const work = mkdtempSync(path.join(tmpdir(), 'wan-prebuild-'));
afterAll(() => rmSync(work, { recursive: true, force: true }));

const VENV_LIB = '/opt/venv/lib/python3.12/site-packages/torch/lib';

/** A shared object compiled with the C compiler the native build uses, linked with `flags`. */
function sharedObject(name: string, flags: string[]): string {
  const src = path.join(work, 'f.c');
  writeFileSync(src, 'int f(void) { return 1; }\n');
  const out = path.join(work, name);
  const r = spawnSync('cc', ['-shared', '-fPIC', '-o', out, src, ...flags], { encoding: 'utf8' });
  expect(r.status, r.stderr).toBe(0);
  return out;
}

describe.runIf(process.platform === 'linux')('prebuild run path check', () => {
  it('reads DT_RUNPATH and DT_RPATH entries, and flags only those outside the system and $ORIGIN', () => {
    const runpath = sharedObject('runpath.so', [`-Wl,--enable-new-dtags,-rpath,${VENV_LIB}:$ORIGIN/../lib`]);
    expect(readRunPaths(runpath)).toEqual({ runpath: [VENV_LIB, '$ORIGIN/../lib'], rpath: [] });
    expect(foreignRunPaths(runpath)).toEqual([VENV_LIB]);
    const rpath = sharedObject('rpath.so', ['-Wl,--disable-new-dtags,-rpath,/usr/lib/x86_64-linux-gnu:/home/builder/libtorch/lib']);
    expect(readRunPaths(rpath)).toEqual({ runpath: [], rpath: ['/usr/lib/x86_64-linux-gnu', '/home/builder/libtorch/lib'] });
    expect(foreignRunPaths(rpath)).toEqual(['/home/builder/libtorch/lib']);
    const none = sharedObject('none.so', []);
    expect(readRunPaths(none)).toEqual({ runpath: [], rpath: [] });
    expect(() => readRunPaths(path.join(work, 'f.c'))).toThrow(/not an ELF file/);
  });

  it("this build's addon: no foreign run path against the system libtorch, its libtorch's lib/ against another", () => {
    const addon = path.join(root, 'build', 'Release', 'wan_video.node');
    expect(existsSync(addon)).toBe(true);
    // The libtorch this build configured against (CMake's cache): a pip torch or an unpacked
    // libtorch keeps its cmake files in <prefix>/share/cmake/Torch and its libraries in <prefix>/lib.
    const torchDir = readFileSync(path.join(root, 'build', 'CMakeCache.txt'), 'utf8').match(/^Torch_DIR:PATH=(.*)$/m)?.[1];
    expect(torchDir).toBeTruthy();
    if (torchDir!.startsWith('/usr/')) {
      expect(foreignRunPaths(addon)).toEqual([]);
    } else {
      expect(foreignRunPaths(addon)).toContain(path.resolve(torchDir!, '..', '..', '..', 'lib'));
    }
  });

  it('prebuild refuses an addon with a run path into a venv, naming it, and writes nothing', () => {
    const build = path.join(work, 'build');
    mkdirSync(path.join(build, 'Release'), { recursive: true });
    const addon = sharedObject(path.join('build', 'Release', 'wan_video.node'), [`-Wl,-rpath,${VENV_LIB}`]);
    const prebuilds = path.join(root, 'prebuilds');
    const hadPrebuilds = existsSync(prebuilds);
    const r = spawnSync(process.execPath, [path.join(root, 'scripts', 'prebuild.mjs'), '--no-build', `--build-dir=${build}`], { encoding: 'utf8' });
    expect(r.status).toBe(1);
    expect(r.stderr).toContain(`${addon} has the run path ${VENV_LIB}`);
    expect(existsSync(prebuilds)).toBe(hadPrebuilds);
  });
});
