// The async plumbing every long native call uses (native/addon/async_job.*): progress in order,
// cancellation through a CancelToken, the error-code mapping, and worker threads that go away
// while a job runs.
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';

import type { NativeProgressEvent } from '../binding.js';
import { native, nativePath } from '../lib/native.js';

const TINY_VAE = path.join(path.dirname(fileURLToPath(import.meta.url)), '..', 'models', 'tiny', 'vae');
const dir = mkdtempSync(path.join(tmpdir(), 'wan-async-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('progress', () => {
  it('arrives in order with step counts, and the call resolves to the steps run', async () => {
    const events: NativeProgressEvent[] = [];
    const steps = await native()._testLongCall(6, 5, undefined, (e) => events.push(e));
    expect(steps).toBe(6);
    // Every event is delivered before the promise settles.
    expect(events.map((e) => e.step)).toEqual([1, 2, 3, 4, 5, 6]);
    for (const e of events) {
      expect(e.stage).toBe('test');
      expect(e.totalSteps).toBe(6);
      expect(e.elapsedMs).toBeGreaterThan(0);
    }
    for (let i = 1; i < events.length; ++i) expect(events[i].elapsedMs).toBeGreaterThanOrEqual(events[i - 1].elapsedMs);
  });

  it('a throwing progress listener does not break the call', async () => {
    let calls = 0;
    const steps = await native()._testLongCall(3, 1, undefined, () => {
      calls++;
      throw new Error('listener bug');
    });
    expect(steps).toBe(3);
    expect(calls).toBe(3);
  });
});

describe('cancellation', () => {
  it('cancel mid-call rejects with ERR_WAN_ABORTED, and the next call works', async () => {
    const token = new (native().CancelToken)();
    expect(token.cancelled).toBe(false);
    const seen: number[] = [];
    const call = native()._testLongCall(1000, 5, token, (e) => {
      seen.push(e.step);
      if (e.step === 3) token.cancel();
    });
    const err = await call.then(() => undefined, (e) => e);
    expect(err?.code).toBe('ERR_WAN_ABORTED');
    expect(err.message).toMatch(/aborted/);
    expect(token.cancelled).toBe(true);
    // It stopped soon after the cancel, not after 1000 steps.
    expect(Math.max(...seen)).toBeLessThan(100);
    expect(await native()._testLongCall(2, 1)).toBe(2);
  });

  it('a token cancelled before the call rejects at once', async () => {
    const token = new (native().CancelToken)();
    token.cancel();
    await expect(native()._testLongCall(1000, 5, token)).rejects.toMatchObject({ code: 'ERR_WAN_ABORTED' });
  });

  it('a non-token is ERR_WAN_BAD_ARGUMENT', () => {
    expect(() => native()._testLongCall(1, 1, {} as any)).toThrow(expect.objectContaining({ code: 'ERR_WAN_BAD_ARGUMENT' }));
  });
});

describe('error mapping', () => {
  it('c10::Error -> ERR_WAN_INTERNAL with libtorch\'s message', async () => {
    const err = await native()._testThrow('c10').then(() => undefined, (e) => e);
    expect(err).toBeInstanceOf(Error);
    expect(err.code).toBe('ERR_WAN_INTERNAL');
    expect(err.message).toMatch(/^libtorch error: mat1 and mat2 shapes cannot be multiplied \(2x3 and 2x3\)/);
    // No C++ backtrace in the message.
    expect(err.message.split('\n').length).toBeLessThanOrEqual(3);
  });

  it('std::bad_alloc -> ERR_WAN_OOM', async () => {
    await expect(native()._testThrow('bad_alloc')).rejects.toMatchObject({ code: 'ERR_WAN_OOM', message: expect.stringMatching(/out of memory/) });
  });

  it('libtorch allocation failure -> ERR_WAN_OOM that says what to try', async () => {
    await expect(native()._testThrow('oom')).rejects.toMatchObject({ code: 'ERR_WAN_OOM', message: expect.stringMatching(/out of memory.*offload/s) });
  });

  it('WanError(BadArgument) -> ERR_WAN_BAD_ARGUMENT with its message', async () => {
    await expect(native()._testThrow('bad_argument')).rejects.toMatchObject({ code: 'ERR_WAN_BAD_ARGUMENT', message: "option 'x' is bad; allowed: 'y'" });
  });

  it('std::runtime_error -> ERR_WAN_INTERNAL', async () => {
    await expect(native()._testThrow('runtime')).rejects.toMatchObject({ code: 'ERR_WAN_INTERNAL', message: 'internal error: boom' });
  });

  it('the addon keeps working after every kind of failure', async () => {
    for (const kind of ['c10', 'bad_alloc', 'oom', 'bad_argument', 'runtime'] as const) await native()._testThrow(kind).catch(() => undefined);
    expect(await native()._testLongCall(1, 1)).toBe(1);
  });
});

describe('libtorch on the JS thread', () => {
  // Entry points that call libtorch before any job starts: its exceptions must become coded errors
  // (a c10::Error crossing node-addon-api's wrapper aborted the process).
  const f32 = (shape: number[], n = shape.reduce((a, b) => a * b, 1)) => ({ dtype: 'float32' as const, shape, data: new Float32Array(n) });

  it('a tensor shape whose element count overflows 64 bits is ERR_WAN_BAD_ARGUMENT, not a wrapped count', () => {
    // 65536^4 = 2^64 wraps to 0 in a uint64 product, which an empty array would match.
    for (const shape of [[65536, 65536, 65536, 65536], [0, 1e12, 1e12, 1e12, 1e12], [2 ** 27, 2 ** 27]]) {
      expect(() => native().runScheduler({ sampler: 'euler', steps: 1 }, f32(shape, 0), f32([1], 1)), String(shape)).toThrow(
        expect.objectContaining({ code: 'ERR_WAN_BAD_ARGUMENT', message: expect.stringContaining('sample.shape') }),
      );
    }
  });

  it('randn: a shape that overflows is ERR_WAN_BAD_ARGUMENT, one that does not fit in memory ERR_WAN_OOM', () => {
    for (const shape of [[1e12, 1e12], [NaN, 2], [1.5], [-1]]) {
      expect(() => native().randn(1, shape), String(shape)).toThrow(expect.objectContaining({ code: 'ERR_WAN_BAD_ARGUMENT' }));
    }
    // 2^50 floats: a valid shape, but libtorch cannot allocate 4 PiB.
    expect(() => native().randn(1, [2 ** 25, 2 ** 25])).toThrow(expect.objectContaining({ code: 'ERR_WAN_OOM', message: expect.stringMatching(/out of memory/) }));
    expect(native().randn(1, [2, 3]).shape).toEqual([2, 3]);
  });

  it('a result too large for memory is ERR_WAN_OOM, and the error is still decorated with what the work saved', async () => {
    // The work succeeds; building its 1 PiB result fails (the pipeline attaches its latents here).
    await expect(native()._testThrow('result_oom')).rejects.toMatchObject({ code: 'ERR_WAN_OOM', decorated: true, message: expect.stringMatching(/out of memory/) });
    expect(await native()._testLongCall(1, 1)).toBe(1);
  });
});

describe('device and dtype options', () => {
  it('cpu and the dtype names parse', () => {
    expect(native()._testParseDevice('cpu')).toEqual({ device: 'cpu', dtype: 'float32' });
    expect(native()._testParseDevice('cpu', 'bfloat16')).toEqual({ device: 'cpu', dtype: 'bfloat16' });
    expect(native()._testParseDevice('cpu', 'float16')).toEqual({ device: 'cpu', dtype: 'float16' });
  });

  it('CUDA on a build without it is ERR_WAN_NO_CUDA saying why', () => {
    const info = native().runtimeInfo();
    for (const device of ['cuda', 'cuda:0', 'cuda:3']) {
      let err: any;
      try {
        native()._testParseDevice(device);
      } catch (e) {
        err = e;
      }
      if (info.flavour === 'cpu') {
        expect(err?.code).toBe('ERR_WAN_NO_CUDA');
        expect(err.message).toContain(device);
        expect(err.message).toMatch(/built against a CPU libtorch/);
        expect(err.message).toMatch(/device 'cpu'/);
      } else if (info.cudaDeviceCount === 0) {
        // A CUDA build on a machine whose driver or GPU is missing: not "a CPU libtorch".
        expect(err?.code).toBe('ERR_WAN_NO_CUDA');
        expect(err.message).toContain(`asks for ${device} but this CUDA build of wan-video sees no CUDA device`);
        expect(err.message).toMatch(/check the NVIDIA driver \(nvidia-smi\) and CUDA_VISIBLE_DEVICES, or use device 'cpu'$/);
      } else if (Number(device.split(':')[1] ?? 0) >= info.cudaDeviceCount) {
        expect(err?.code).toBe('ERR_WAN_NO_CUDA');
        expect(err.message).toMatch(/CUDA device\(s\) are visible/);
      } else {
        expect(err).toBeUndefined();
      }
    }
  });

  it('unknown device and dtype names are ERR_WAN_BAD_ARGUMENT listing the allowed ones', () => {
    for (const device of ['gpu', 'CUDA', 'cuda:', 'cuda:-1', 'cuda:x', 'cuda:123456', 'mps', '']) {
      expect(() => native()._testParseDevice(device), device).toThrow(
        expect.objectContaining({ code: 'ERR_WAN_BAD_ARGUMENT', message: expect.stringMatching(/option 'device' is '.*'; allowed: 'cpu', 'cuda', 'cuda:N'/) }),
      );
    }
    for (const dtype of ['fp32', 'float64', 'bf16', 'FLOAT32']) {
      expect(() => native()._testParseDevice('cpu', dtype), dtype).toThrow(
        expect.objectContaining({ code: 'ERR_WAN_BAD_ARGUMENT', message: expect.stringContaining(`option 'dtype' is '${dtype}'; allowed: 'float32', 'bfloat16', 'float16'`) }),
      );
    }
  });
});

describe('worker threads', () => {
  // Runs `body` in a fresh node process (the addon path in ADDON) and returns how it ended.
  function runScript(name: string, body: string) {
    const file = path.join(dir, name);
    writeFileSync(file, body);
    return spawnSync(process.execPath, [file], { env: { ...process.env, ADDON: nativePath() }, encoding: 'utf8', timeout: 60_000 });
  }

  it('a worker terminated mid-job does not crash the process, and the main thread keeps working', () => {
    const r = runScript(
      'terminate-worker.mjs',
      `
import { Worker } from 'node:worker_threads';
import { createRequire } from 'node:module';
const require = createRequire(import.meta.url);
const workerCode = \`
  const { parentPort } = require('node:worker_threads');
  const addon = require(process.env.ADDON);
  let told = false;
  addon._testLongCall(100000, 10, undefined, (e) => { if (!told) { told = true; parentPort.postMessage('running'); } })
    .then(() => parentPort.postMessage('finished'), (e) => parentPort.postMessage('rejected ' + e.code));
\`;
const addon = require(process.env.ADDON);
// A main-thread job runs across the worker's death and must not be cancelled by it.
const mainJob = addon._testLongCall(40, 10);
for (let round = 0; round < 3; ++round) {
  const w = new Worker(workerCode, { eval: true });
  await new Promise((resolve, reject) => {
    w.on('message', (m) => { if (m === 'running') resolve(); else reject(new Error('worker said ' + m)); });
    w.on('error', reject);
  });
  const code = await w.terminate();
  console.log('worker terminated', code);
}
console.log('main job', await mainJob);
console.log('after', await addon._testLongCall(2, 1));
`,
    );
    expect(r.signal, r.stderr).toBeNull();
    expect(r.status, r.stderr).toBe(0);
    expect(r.stdout).toContain('worker terminated 1');
    expect(r.stdout).toContain('main job 40');
    expect(r.stdout).toContain('after 2');
  });

  it('process.exit on the main thread while a job runs exits with that code', () => {
    const r = runScript(
      'exit-main.mjs',
      `
import { createRequire } from 'node:module';
const addon = createRequire(import.meta.url)(process.env.ADDON);
addon._testLongCall(100000, 10, undefined, (e) => { if (e.step === 3) process.exit(3); });
`,
    );
    expect(r.signal, r.stderr).toBeNull();
    expect(r.status, r.stderr).toBe(3);
  });

  it('process.exit while a job is inside libtorch kernels (VAE decode) exits with that code, not a signal', () => {
    // exit() runs libtorch's and oneDNN's static destructors: the job must be stopped before them.
    const r = runScript(
      'exit-decode.mjs',
      `
import { createRequire } from 'node:module';
const addon = createRequire(import.meta.url)(process.env.ADDON);
const vae = await addon.loadVae(${JSON.stringify(TINY_VAE)});
const shape = [1, vae.info().zDim, 5, 32, 32];
vae.decode({ dtype: 'float32', shape, data: new Float32Array(shape.reduce((a, b) => a * b)) }, {}, undefined, (e) => {
  if (e.stage === 'decode' && e.step === 2) process.exit(5);
});
`,
    );
    expect(r.signal, r.stderr).toBeNull();
    expect(r.status, r.stderr).toBe(5);
  });

  it('a worker that exits while its job runs (process.exit inside) ends cleanly', () => {
    const r = runScript(
      'exit-worker.mjs',
      `
import { Worker } from 'node:worker_threads';
const w = new Worker(\`
  const addon = require(process.env.ADDON);
  addon._testLongCall(100000, 10, undefined, (e) => { if (e.step === 2) process.exit(7); });
\`, { eval: true });
const code = await new Promise((resolve) => w.on('exit', resolve));
console.log('worker exit', code);
`,
    );
    expect(r.signal, r.stderr).toBeNull();
    expect(r.status, r.stderr).toBe(0);
    expect(r.stdout).toContain('worker exit 7');
  });
});
