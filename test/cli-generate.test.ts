// `wan-video generate` end to end with the bundled tiny model (models/tiny, random weights):
// needs lib/pipeline.ts and the assembled models/tiny.
import { execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { cp, mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';

import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import sharp from 'sharp';

import { native } from '../lib/native.js';
import { FIXTURES } from './helpers/fixtures.js';
import { buildCli, jsonLines, ROOT, runCli, startCli } from './helpers/cli.js';

let dir: string;
beforeAll(async () => {
  buildCli();
  dir = await mkdtemp(path.join(os.tmpdir(), 'wan-video-cli-'));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

// Small enough for the CPU: 32x32, 5 frames, 2 steps.
const SMALL = ['--prompt', 'a white cat on a surfboard', '--size', '32x32', '--frames', '5', '--steps', '2', '--seed', '42'];

function probe(file: string) {
  const out = execFileSync('ffprobe', [
    '-v', 'error', '-count_frames', '-select_streams', 'v:0',
    '-show_entries', 'stream=codec_name,width,height,r_frame_rate,nb_read_frames', '-of', 'json', file,
  ]);
  return JSON.parse(out.toString()).streams[0];
}

describe('wan-video generate', () => {
  it('writes a playable mp4 with the bundled model and says it is a random-weight test model', async () => {
    const out = path.join(dir, 'demo.mp4');
    const r = await runCli(['generate', ...SMALL, '--out', out]);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).toMatch(/random weights/);
    expect(r.stderr).toContain('Wan-AI/Wan2.2-TI2V-5B-Diffusers');
    expect(r.stderr).toMatch(/\[denoise\] 2\/2/); // not a TTY: plain progress lines
    const s = probe(out);
    expect([s.codec_name, s.width, s.height, Number(s.nb_read_frames)]).toEqual(['h264', 32, 32, 5]);
  });

  it('an unknown backend in WAN_SDPA_ORDER is ERR_WAN_BAD_ARGUMENT naming it, and no file is written', async () => {
    const out = path.join(dir, 'bad-sdpa.mp4');
    const r = await runCli(['generate', ...SMALL, '--out', out], { ...process.env, WAN_SDPA_ORDER: 'cudnn,warp' });
    expect(r.code).not.toBe(0);
    expect(r.stderr).toContain('ERR_WAN_BAD_ARGUMENT');
    expect(r.stderr).toContain("WAN_SDPA_ORDER: unknown attention backend 'warp' (math, flash, efficient or cudnn)");
    expect(existsSync(out)).toBe(false);
  });

  it('done says which attention kernel the DiT ran (WAN_SDPA_ORDER is accepted; the CPU keeps its own order)', async () => {
    const out = path.join(dir, 'sdpa-math.mp4');
    const r = await runCli(['generate', ...SMALL, '--out', out, '--json'], { ...process.env, WAN_SDPA_ORDER: 'math' });
    expect(r.code, r.stderr).toBe(0);
    const done = jsonLines(r.stdout).find((l) => l.event === 'done');
    // libtorch < 2: no SDPA (our exact fallback). 2.x on the CPU: its CPU dispatch tries flash, then
    // math, whatever the order says (measured with 2.13); the order matters on CUDA.
    const major = Number(native().runtimeInfo().libtorchVersion.split('.')[0]);
    if (major < 2) expect(done?.attentionBackend).toBe('chunked_fallback');
    else expect(['flash_attention', 'math']).toContain(done?.attentionBackend);
    const plain = await runCli(['generate', ...SMALL, '--out', path.join(dir, 'sdpa-plain.mp4')]);
    expect(plain.stderr).toMatch(/; attention: (chunked_fallback|flash_attention|efficient_attention|cudnn_attention|math)\n/);
  });

  it('--json prints one object per line: progress events in order, then done', async () => {
    const out = path.join(dir, 'json.webm');
    const r = await runCli(['generate', ...SMALL, '--out', out, '--json']);
    expect(r.code, r.stderr).toBe(0);
    const lines = jsonLines(r.stdout);
    const denoise = lines.filter((l) => l.event === 'progress' && l.stage === 'denoise');
    expect(denoise.map((l) => [l.step, l.totalSteps])).toEqual([[1, 2], [2, 2]]);
    for (const l of denoise) expect(typeof l.elapsedMs).toBe('number');
    const done = lines[lines.length - 1];
    expect(done).toMatchObject({ event: 'done', out, width: 32, height: 32, numFrames: 5 });
    expect(existsSync(out)).toBe(true);
  });

  it('image to video shows the image encode as a stage of its own', async () => {
    const image = path.join(dir, 'first.png');
    await sharp({ create: { width: 64, height: 64, channels: 3, background: { r: 200, g: 40, b: 90 } } }).png().toFile(image);
    // The TI2V-5B fixture with the bundled model's tokenizer (the fixtures have none).
    const model = path.join(dir, 'ti2v-5b-tiny');
    await cp(path.join(FIXTURES, 'ti2v-5b-tiny'), model, { recursive: true, filter: (f) => !f.includes(`${path.sep}cases`) });
    await cp(path.join(ROOT, 'models', 'tiny', 'tokenizer'), path.join(model, 'tokenizer'), { recursive: true });
    const args = ['generate', '--model', model, '--image', image, '--prompt', 'x', '--size', '64x64', '--frames', '5', '--steps', '1'];
    const plain = await runCli([...args, '--out', path.join(dir, 'i2v.mp4')]);
    expect(plain.code, plain.stderr).toBe(0);
    expect(plain.stderr).toMatch(/^\[image\] 1\/1 /m);
    const json = await runCli([...args, '--out', path.join(dir, 'i2v-json.mp4'), '--json']);
    expect(json.code, json.stderr).toBe(0);
    const stages = jsonLines(json.stdout).filter((l) => l.event === 'progress').map((l) => l.stage);
    expect([...new Set(stages)]).toEqual(['load', 'encode-text', 'encode-image', 'denoise', 'decode', 'done']);
  });

  it('done names the seed, so that a run with a random seed can be made again', async () => {
    const noSeed = SMALL.slice(0, -2);
    const first = await runCli(['generate', ...noSeed, '--out', path.join(dir, 'random', 'f-%04d.png'), '--json']);
    expect(first.code, first.stderr).toBe(0);
    const seed = jsonLines(first.stdout).at(-1)!.seed;
    expect(Number.isSafeInteger(seed)).toBe(true);
    const again = await runCli(['generate', ...noSeed, '--seed', String(seed), '--out', path.join(dir, 'again', 'f-%04d.png')]);
    expect(again.code, again.stderr).toBe(0);
    expect(again.stderr).toContain(`, seed ${seed})`);
    const [a, b] = [await readdir(path.join(dir, 'random')), await readdir(path.join(dir, 'again'))];
    expect(a).toHaveLength(5); // --frames 5: the comparison below is not over an empty folder
    expect(b).toEqual(a);
    for (const f of a) expect((await readFile(path.join(dir, 'again', f))).equals(await readFile(path.join(dir, 'random', f))), f).toBe(true);
  });

  it('Ctrl-C (SIGINT) aborts, exits 130 and leaves no output file', async () => {
    const target = path.join(dir, 'interrupted');
    const out = path.join(target, 'never.mp4');
    const run = startCli(['generate', ...SMALL.slice(0, -4), '--steps', '200', '--seed', '1', '--out', out, '--json']);
    // Interrupt once denoising is under way.
    while (!run.stdout().includes('"stage":"denoise"')) {
      if (run.child.exitCode !== null) break;
      await new Promise((r) => setTimeout(r, 20));
    }
    run.child.kill('SIGINT');
    const r = await run.done;
    expect(r.code, r.stderr).toBe(130);
    expect(existsSync(out)).toBe(false);
    expect(existsSync(target) ? await readdir(target) : []).toEqual([]);
    const last = jsonLines(r.stdout).at(-1)!;
    expect(last).toMatchObject({ event: 'error', code: 'ERR_WAN_ABORTED' });
  });
});
