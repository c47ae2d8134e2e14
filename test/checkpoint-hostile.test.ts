// Hostile model folders beyond the safetensors format itself: special files where a checkpoint file
// belongs (a FIFO would block open() forever, a device never ends), symlink loops, integer weights,
// and scheduler settings only the sampler understands. Each is ERR_WAN_BAD_CHECKPOINT at load, in
// seconds, naming the file.
import { spawnSync } from 'node:child_process';
import { cpSync, mkdtempSync, rmSync, symlinkSync, unlinkSync, writeFileSync, readFileSync } from 'node:fs';
import { execFileSync } from 'node:child_process';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

import { afterAll, describe, expect, it } from 'vitest';

import { native, nativePath } from '../lib/native.js';
import { WanPipeline } from '../lib/pipeline.js';
import { bytesOf, safetensorsImage, type TensorSpec } from './helpers/safetensors-writer.js';

const TINY = path.join(path.dirname(fileURLToPath(import.meta.url)), '..', 'models', 'tiny');
const dir = mkdtempSync(path.join(tmpdir(), 'wan-hostile-folder-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** A copy of the bundled tiny model to corrupt. */
function tinyCopy(name: string): string {
  const copy = path.join(dir, name);
  cpSync(TINY, copy, { recursive: true });
  return copy;
}

function fifoAt(file: string): void {
  rmSync(file, { force: true });
  execFileSync('mkfifo', [file]);
}

/**
 * Runs `body` (CommonJS, with `addon` and `tokenizerAddon` paths in scope) in a child process:
 * a blocking open() must not hang the test runner, so the child has a deadline.
 */
function inChild(body: string): { status: number | null; signal: NodeJS.Signals | null; stdout: string; stderr: string } {
  const addon = nativePath();
  const tokenizerAddon = process.env.WAN_VIDEO_TOKENIZER_ADDON ?? path.join(path.dirname(addon), 'tokenizer', 'wan_tokenizer.node');
  const script = `const addon = ${JSON.stringify(addon)}, tokenizerAddon = ${JSON.stringify(tokenizerAddon)};\n${body}`;
  const r = spawnSync(process.execPath, ['-e', script], { encoding: 'utf8', timeout: 20_000 });
  return { status: r.status, signal: r.signal, stdout: r.stdout, stderr: r.stderr };
}

const reportError = `
  const report = (e) => { console.log(JSON.stringify({ code: e.code, message: e.message })); };`;

describe('special files where a checkpoint file belongs', () => {
  it('a FIFO as a config, a shard or the tokenizer model is refused at once, not waited on', () => {
    const folder = tinyCopy('fifo');
    const config = path.join(folder, 'transformer', 'config.json');
    const shard = path.join(folder, 'transformer', 'diffusion_pytorch_model-00001-of-00002.safetensors');
    const spiece = path.join(folder, 'tokenizer', 'spiece.model');
    for (const f of [config, shard, spiece]) fifoAt(f);
    const r = inChild(`${reportError}
      const m = require(addon);
      try { m.readModelConfig(${JSON.stringify(config)}, 'transformer'); } catch (e) { report(e); }
      m.readSafetensors(${JSON.stringify(shard)}).then(() => console.log('{}'), report).then(() => {
        try { require(tokenizerAddon).loadSentencePiece(${JSON.stringify(spiece)}); } catch (e) { report(e); }
      });`);
    expect(r.signal, 'the child was killed at its deadline: something blocked').toBeNull();
    expect(r.status).toBe(0);
    const errors = r.stdout.trim().split('\n').map((l) => JSON.parse(l));
    expect(errors).toHaveLength(3);
    for (const [i, file] of [config, shard, spiece].entries()) {
      expect(errors[i].code).toBe('ERR_WAN_BAD_CHECKPOINT');
      expect(errors[i].message).toContain(file);
      expect(errors[i].message).toContain('not a regular file');
    }
  });

  it('a config or tokenizer model that never ends (/dev/zero) is refused without reading it', () => {
    const folder = tinyCopy('dev-zero');
    const config = path.join(folder, 'model_index.json');
    const spiece = path.join(folder, 'tokenizer', 'spiece.model');
    for (const f of [config, spiece]) {
      unlinkSync(f);
      symlinkSync('/dev/zero', f);
    }
    const r = inChild(`${reportError}
      try { require(addon).readModelConfig(${JSON.stringify(folder)}, 'model_index'); } catch (e) { report(e); }
      try { require(tokenizerAddon).loadSentencePiece(${JSON.stringify(spiece)}); } catch (e) { report(e); }`);
    expect(r.signal).toBeNull();
    const errors = r.stdout.trim().split('\n').map((l) => JSON.parse(l));
    expect(errors.map((e) => e.code)).toEqual(['ERR_WAN_BAD_CHECKPOINT', 'ERR_WAN_BAD_CHECKPOINT']);
    expect(errors[0].message).toContain('model_index.json is not a regular file');
    expect(errors[1].message).toContain('spiece.model is not a regular file');
  });

  it('an oversized config is refused by its size', async () => {
    const folder = tinyCopy('huge-config');
    const config = path.join(folder, 'vae', 'config.json');
    writeFileSync(config, readFileSync(config, 'utf8') + ' '.repeat(65 << 20));
    const err = await WanPipeline.load(folder).then(() => undefined, (e) => e);
    expect(err?.code).toBe('ERR_WAN_BAD_CHECKPOINT');
    expect(err?.message).toMatch(/config\.json has \d+ bytes, more than the/);
  });

  it('a shard index of more JSON values than any real one is refused (value limit), quickly', async () => {
    // A valid weight_map plus 2^20 zeros: parsed, each value costs ~100 bytes of memory.
    const folder = tinyCopy('index-values');
    const index = path.join(folder, 'transformer', 'diffusion_pytorch_model.safetensors.index.json');
    const json = JSON.parse(readFileSync(index, 'utf8'));
    writeFileSync(index, JSON.stringify({ ...json, metadata: { ...json.metadata, junk: new Array(2 ** 20 + 1).fill(0) } }));
    const start = Date.now();
    const err = await native().describeTensors(index).then(() => undefined, (e) => e);
    expect(err?.code).toBe('ERR_WAN_BAD_CHECKPOINT');
    expect(err?.message).toContain(index);
    expect(err?.message).toMatch(/more than 1048576 values/);
    expect(Date.now() - start).toBeLessThan(5000);
  });

  it('a shard that is a symlink loop is a bad checkpoint, not an internal error', async () => {
    const folder = tinyCopy('loop');
    const shard = path.join(folder, 'transformer_2', 'diffusion_pytorch_model-00002-of-00002.safetensors');
    unlinkSync(shard);
    symlinkSync(path.basename(shard), shard);
    const err = await WanPipeline.load(folder).then(() => undefined, (e) => e);
    expect(err?.code).toBe('ERR_WAN_BAD_CHECKPOINT');
    expect(err?.message).toContain(shard);
  });
});

describe('checkpoint contents that would only fail later', () => {
  it('an integer weight is refused at load, naming the file, the tensor and its dtype', async () => {
    const folder = tinyCopy('int-weight');
    const file = path.join(folder, 'vae', 'diffusion_pytorch_model.safetensors');
    const { tensors } = await native().readSafetensors(file);
    const names = Object.keys(tensors);
    const specs: Record<string, TensorSpec> = {};
    for (const name of names) {
      const t = tensors[name];
      specs[name] = name === names[0]
        ? { dtype: 'I64', shape: t.shape, bytes: new Uint8Array(8 * t.shape.reduce((a, b) => a * b, 1)) }
        : { dtype: 'F32', shape: t.shape, bytes: bytesOf(t.data as Float32Array) };
    }
    writeFileSync(file, safetensorsImage(specs));
    const err = await WanPipeline.load(folder).then(() => undefined, (e) => e);
    expect(err?.code).toBe('ERR_WAN_BAD_CHECKPOINT');
    expect(err?.message).toContain(file);
    expect(err?.message).toContain(`'${names[0]}' has dtype Long`);
  });

  it('a scheduler config the default sampler cannot run is refused at load', async () => {
    const folder = tinyCopy('solver-order');
    const file = path.join(folder, 'scheduler', 'scheduler_config.json');
    const config = JSON.parse(readFileSync(file, 'utf8'));
    writeFileSync(file, JSON.stringify({ ...config, solver_order: 3 }));
    const err = await WanPipeline.load(folder).then(() => undefined, (e) => e);
    expect(err?.code).toBe('ERR_WAN_BAD_CHECKPOINT');
    expect(err?.message).toContain("'solver_order'");
  });
});
