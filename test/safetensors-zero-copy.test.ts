// Zero-copy weights: runs the C++ core tests (native/tools/core_tests.cpp, built next to the addon)
// which check that a float32 CPU weight is a view of the file mapping and that writing to it
// changes neither the file nor another open of it; and that loading stops between tensors, the
// attention fallback and the VAE between their blocks, when the run is cancelled (C++ only: JS
// cannot reach inside a call).
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';

import { nativePath } from '../lib/native.js';

describe('WeightLoader on the CPU shares the file mapping', () => {
  it('core_tests passes every check', () => {
    const exe = path.join(path.dirname(nativePath()), 'core_tests');
    expect(existsSync(exe), `${exe} is built with the addon (WAN_BUILD_TOOLS)`).toBe(true);
    const dir = mkdtempSync(path.join(tmpdir(), 'wan-core-tests-'));
    try {
      const vaeConfig = path.join(import.meta.dirname, '..', 'models', 'tiny', 'vae', 'config.json');
      const r = spawnSync(exe, [path.join(dir, 'w.safetensors'), vaeConfig], { encoding: 'utf8', timeout: 60_000 });
      expect(r.status, r.stdout + r.stderr).toBe(0);
      expect(r.stdout).toContain('ok   float32 CPU weight points into the file mapping (zero-copy)');
      expect(r.stdout).toContain('ok   writing to the view does not change the file on disk');
      expect(r.stdout).toContain('ok   another open of the file sees the original values');
      expect(r.stdout).toContain('ok   WeightLoader cancelled after one tensor throws ERR_WAN_ABORTED at the next');
      expect(r.stdout).toContain('ok   WanVae::load with a cancelled context throws ERR_WAN_ABORTED');
      expect(r.stdout).toContain('ok   chunkedAttention with a cancelled context throws ERR_WAN_ABORTED');
      expect(r.stdout).toContain('ok   the VAE decoder with a cancelled context throws ERR_WAN_ABORTED between its blocks');
      expect(r.stdout).toContain('ok   the VAE encoder with a cancelled context throws ERR_WAN_ABORTED between its blocks');
      expect(r.stdout).not.toContain('FAIL');
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
