// runtimeInfo(): what this installation runs on.
import { execFileSync, spawnSync } from 'node:child_process';
import { cpSync, existsSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { describe, expect, it } from 'vitest';

import { runtimeInfo } from '../lib/index.js';
import { native, nativePath } from '../lib/native.js';
import { buildCli, ROOT } from './helpers/cli.js';

describe('runtimeInfo', () => {
  it('names the libtorch, the flavour, the devices and the addon file', () => {
    const info = runtimeInfo();
    expect(info.libtorchVersion).toMatch(/^\d+\.\d+\.\d+/);
    expect(['cpu', 'cuda']).toContain(info.flavour);
    expect(info.threads).toBeGreaterThanOrEqual(1);
    expect(info.addonPath).toBe(nativePath());
    expect(existsSync(info.addonPath)).toBe(true);
    expect(info.addonPath).toMatch(/\.node$/);
    expect(path.isAbsolute(info.addonPath)).toBe(true);
    // The CPU first, with the machine's memory.
    expect(info.devices[0]).toMatchObject({ type: 'cpu', name: 'cpu' });
    const meminfo = readFileSync('/proc/meminfo', 'utf8').match(/MemTotal:\s+(\d+) kB/);
    expect(info.devices[0].totalMemory).toBe(Number(meminfo![1]) * 1024);
  });

  it('matches the build: a CPU libtorch lists no CUDA device, a CUDA one lists each GPU', () => {
    const info = runtimeInfo();
    const raw = native().runtimeInfo();
    const gpus = info.devices.filter((d) => d.type === 'cuda');
    expect(gpus.length).toBe(raw.cudaDeviceCount);
    expect(info.cudaAvailable).toBe(raw.cudaDeviceCount > 0);
    if (info.flavour === 'cpu') {
      expect(gpus).toEqual([]);
      expect(info.cudaAvailable).toBe(false);
    }
    // Why not, exactly when not: a CPU build names its libtorch; a CUDA build without a GPU passes on
    // the CUDA runtime's reason and what to check.
    if (info.cudaAvailable) {
      expect(info.cudaUnavailableReason).toBeUndefined();
    } else if (info.flavour === 'cpu') {
      expect(info.cudaUnavailableReason).toMatch(/^this wan-video build has no CUDA \(it was built against a CPU libtorch\)/);
    } else {
      expect(info.cudaUnavailableReason).toMatch(/^this CUDA build of wan-video sees no CUDA device \(the CUDA runtime says: .+\); check the NVIDIA driver/);
    }
    expect(info.cudaUnavailableReason).toBe(raw.cudaUnavailableReason);
    gpus.forEach((d, i) => {
      expect(d).toMatchObject({ type: 'cuda', name: `cuda:${i}`, index: i });
      expect(d.totalMemory).toBeGreaterThan(0);
    });
  });

  it('reports the fused kernels: on in a CUDA build unless WAN_FUSED_KERNELS=0, never in a CPU build', () => {
    // The switch is read once per process: each setting gets a process of its own.
    const probe = (value: string) =>
      JSON.parse(
        execFileSync(process.execPath, ['-e', 'console.log(JSON.stringify(require(process.argv[1]).runtimeInfo()))', nativePath()], {
          env: { ...process.env, WAN_FUSED_KERNELS: value },
          encoding: 'utf8',
        }),
      );
    const on = probe('1'), unset = probe(''), off = probe('0');
    expect(on.fusedKernels).toBe(on.flavour === 'cuda');
    expect(unset.fusedKernels).toBe(on.flavour === 'cuda');
    expect(off.fusedKernels).toBe(false);
    expect(runtimeInfo().fusedKernels).toBe(native().runtimeInfo().fusedKernels);
  });
});

describe('setAllowTF32 (the parity runs turn TF32 off)', () => {
  it('takes a boolean, and anything else is ERR_WAN_BAD_ARGUMENT', () => {
    const n = native();
    expect(n.setAllowTF32(false)).toBeUndefined();
    expect(n.setAllowTF32(true)).toBeUndefined();
    for (const bad of [[], ['no'], [1]]) {
      let err: (Error & { code?: string }) | undefined;
      try {
        (n.setAllowTF32 as (...args: unknown[]) => void)(...bad);
      } catch (e) {
        err = e as Error;
      }
      expect(err?.code, JSON.stringify(bad)).toBe('ERR_WAN_BAD_ARGUMENT');
      expect(err?.message).toBe('setAllowTF32(allow: boolean)');
    }
  });
});

// What runtimeInfo() of the compiled lib in `pkgRoot`/dist throws, in a child process (the addon is
// looked up once per process): its code and message.
function runtimeInfoErrorIn(pkgRoot: string, env: NodeJS.ProcessEnv): { code: string; message: string } {
  const index = pathToFileURL(path.join(pkgRoot, 'dist', 'lib', 'index.js')).href;
  const r = spawnSync(process.execPath, ['--input-type=module', '-e',
    `import('${index}').then((m) => m.runtimeInfo()).catch((e) => { console.log(JSON.stringify({ code: e.code, message: e.message })); })`],
    { env, encoding: 'utf8' });
  return JSON.parse(r.stdout.trim());
}

describe('an addon whose libtorch is missing', () => {
  it('is ERR_WAN_NO_LIBTORCH naming the file tried and the library that is missing', () => {
    // The child imports dist/lib: compile it from lib/ first, not whatever an earlier build left there.
    buildCli();
    // A copy of this build's addon that needs a library no machine has: its libtorch soname with
    // one letter changed (same length, so the ELF stays valid).
    const addon = readFileSync(nativePath());
    const soname = 'libtorch_cpu.so'; // every libtorch build has it
    expect(addon.includes(soname)).toBe(true);
    const renamed = 'libtorch_cpX.so';
    const dir = mkdtempSync(path.join(tmpdir(), 'wan-noltorch-'));
    try {
      const copy = path.join(dir, 'wan_video.node');
      const bytes = Buffer.from(addon);
      for (let at = bytes.indexOf(soname); at >= 0; at = bytes.indexOf(soname, at + 1)) bytes.write(renamed, at, 'latin1');
      writeFileSync(copy, bytes);
      const err = runtimeInfoErrorIn(ROOT, { ...process.env, WAN_VIDEO_ADDON: copy });
      expect(err.code).toBe('ERR_WAN_NO_LIBTORCH');
      expect(err.message).toContain(`Tried: WAN_VIDEO_ADDON=${copy}`);
      expect(err.message).toMatch(new RegExp(`not the libtorch it was built against: ${renamed.replace(/\./g, '\\.')}[\\w.]* is missing`));
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('is ERR_WAN_NO_LIBTORCH saying that no addon was built, and why that happens, in an installation without one', () => {
    buildCli();
    // An installed package whose install script never ran: the compiled lib and its dependencies,
    // no build/ and no prebuilds/.
    const pkg = mkdtempSync(path.join(tmpdir(), 'wan-nobuild-'));
    try {
      writeFileSync(path.join(pkg, 'package.json'), JSON.stringify({ name: 'wan-video', type: 'module' }));
      cpSync(path.join(ROOT, 'dist', 'lib'), path.join(pkg, 'dist', 'lib'), { recursive: true });
      symlinkSync(path.join(ROOT, 'node_modules'), path.join(pkg, 'node_modules'));
      const env = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('WAN_VIDEO_')));
      const err = runtimeInfoErrorIn(pkg, env);
      expect(err.code).toBe('ERR_WAN_NO_LIBTORCH');
      expect(err.message).toContain(`Tried: node-gyp-build(${pkg})`);
      expect(err.message).toContain('No addon was built in this installation');
      expect(err.message).toContain('`allowScripts` entry in your package.json that denies wan-video');
      expect(err.message).toContain('npm rebuild wan-video');
    } finally {
      rmSync(pkg, { recursive: true, force: true });
    }
  });
});
