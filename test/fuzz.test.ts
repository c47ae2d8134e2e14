// The libFuzzer harness of the safetensors header parser (test/fuzz): a bounded run must find
// nothing, and every kept input (crashes/: past findings and regressions, corpus/: valid seeds)
// replays through readSafetensors as a result or an ERR_WAN_BAD_CHECKPOINT, never a crash.
import { spawnSync } from 'node:child_process';
import { readdirSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';

import { native } from '../lib/native.js';

const fuzzDir = path.join(import.meta.dirname, 'fuzz');

function inputs(folder: string): string[] {
  return readdirSync(path.join(fuzzDir, folder))
    .filter((f) => !f.endsWith('.md'))
    .map((f) => path.join(fuzzDir, folder, f));
}

describe('safetensors header fuzzer', () => {
  it('builds with clang (-fsanitize=fuzzer,address,undefined) and a 20 s run finds no crash', () => {
    const clang = spawnSync('clang++', ['--version'], { encoding: 'utf8' });
    expect(clang.status, 'clang++ is needed for the fuzzer: apt-get install clang libclang-rt-14-dev').toBe(0);
    const before = new Set(readdirSync(path.join(fuzzDir, 'crashes')));
    const r = spawnSync('bash', [path.join(fuzzDir, 'run.sh'), '20'], { encoding: 'utf8', timeout: 110_000 });
    const found = readdirSync(path.join(fuzzDir, 'crashes')).filter((f) => !before.has(f));
    expect(found, `new crashing inputs in test/fuzz/crashes: ${found.join(', ')}\n${r.stderr.slice(-3000)}`).toEqual([]);
    expect(r.status, r.stderr.slice(-3000)).toBe(0);
    expect(r.stderr).toMatch(/Done \d+ runs in \d+ second/);
  }, 120_000);

  it('has a seed corpus and kept inputs to replay', () => {
    expect(inputs('corpus').length).toBeGreaterThanOrEqual(5);
    expect(inputs('crashes').length).toBeGreaterThanOrEqual(1);
  });

  it('replays crashes/ through readSafetensors: each is an ERR_WAN_BAD_CHECKPOINT naming the file', async () => {
    for (const file of inputs('crashes')) {
      const err = await native().readSafetensors(file).then(() => undefined, (e: any) => e);
      expect(err?.code, file).toBe('ERR_WAN_BAD_CHECKPOINT');
      expect(err.message).toContain(file);
    }
  });

  it('replays corpus/ (valid seeds): every header parses, and the tensors read where libtorch has the dtype', async () => {
    for (const file of inputs('corpus')) {
      const listed = await native().describeTensors(file);
      const fp8 = listed.tensors.some((t) => t.dtype.startsWith('F8_'));
      const read = await native().readSafetensors(file).then(
        (r) => Object.keys(r.tensors).length,
        (e: any) => e,
      );
      if (typeof read === 'number') expect(read, file).toBe(listed.tensors.length);
      else {
        // Only fp8 on libtorch < 2.1 may fail, and then with a clear checkpoint error.
        expect(fp8, `${file}: ${read.message}`).toBe(true);
        expect(read.code).toBe('ERR_WAN_BAD_CHECKPOINT');
      }
    }
  });
});
