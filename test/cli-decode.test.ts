// No lost work on the command line: when `wan-video generate` is stopped (or fails) after denoising,
// it keeps the latents beside --out, and `wan-video decode` finishes the same video from them.
import { mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';

import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { float32Tensor } from '../lib/tensor.js';
import { latentsFileFor, loadLatents, saveLatents } from '../lib/latents-file.js';
import { finishCommand } from '../lib/cli/generate.js';
import { FIXTURES } from './helpers/fixtures.js';
import { buildCli, jsonLines, runCli, startCli } from './helpers/cli.js';

let dir: string;
beforeAll(async () => {
  buildCli();
  dir = await mkdtemp(path.join(os.tmpdir(), 'wan-video-decode-'));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

// 41 frames: 11 latent frames decoded one by one (~0.15 s each here), so a Ctrl-C sent at the first
// decode event lands in the decode.
const LONG = ['--prompt', 'a red fox in the snow', '--size', '160x96', '--frames', '41', '--steps', '2', '--seed', '5'];

async function frames(folder: string): Promise<Buffer[]> {
  const names = (await readdir(folder)).filter((n) => n.endsWith('.png')).sort();
  return Promise.all(names.map((n) => readFile(path.join(folder, n))));
}

describe('latents files', () => {
  it('are named after --out, beside it', () => {
    expect(latentsFileFor('out/demo.mp4')).toBe(path.join('out', 'demo.latents.safetensors'));
    expect(latentsFileFor('frames/frame-%04d.png')).toBe(path.join('frames', 'frame.latents.safetensors'));
    expect(latentsFileFor('%04d.png')).toBe('video.latents.safetensors');
  });

  it('round-trip the latents, family and fps; a file without them is ERR_WAN_BAD_ARGUMENT naming it', async () => {
    const latents = float32Tensor([1, 16, 2, 3, 4], Array.from({ length: 384 }, (_, i) => i / 7 - 20));
    const file = path.join(dir, 'sub', 'x.latents.safetensors');
    await saveLatents(file, latents, { family: 't2v-a14b', fps: 16 });
    const back = await loadLatents(file);
    expect(back.family).toBe('t2v-a14b');
    expect(back.fps).toBe(16);
    expect(back.latents.shape).toEqual([1, 16, 2, 3, 4]);
    expect(Buffer.from((back.latents.data as Float32Array).buffer).equals(Buffer.from(latents.data.buffer))).toBe(true);
    expect(await readdir(path.join(dir, 'sub'))).toEqual(['x.latents.safetensors']); // no temporary file left

    const other = path.join(dir, 'other.safetensors');
    const header = JSON.stringify({ weights: { dtype: 'F32', shape: [2], data_offsets: [0, 8] } }).padEnd(64, ' ');
    const len = Buffer.alloc(8);
    len.writeBigUInt64LE(BigInt(header.length));
    await writeFile(other, Buffer.concat([len, Buffer.from(header), Buffer.alloc(8)]));
    await expect(loadLatents(other)).rejects.toMatchObject({ code: 'ERR_WAN_BAD_ARGUMENT', message: expect.stringContaining(`${other} holds no float32 tensor 'latents'`) });

    // Written by a later wan-video in a layout this one does not know: refused, not misread.
    const future = path.join(dir, 'future.latents.safetensors');
    const meta = JSON.stringify({ __metadata__: { format: 'wan-video latents', version: '2' }, latents: { dtype: 'F32', shape: [1, 16, 1, 1, 1], data_offsets: [0, 64] } }).padEnd(128, ' ');
    const size = Buffer.alloc(8);
    size.writeBigUInt64LE(BigInt(meta.length));
    await writeFile(future, Buffer.concat([size, Buffer.from(meta), Buffer.alloc(64)]));
    await expect(loadLatents(future)).rejects.toMatchObject({ code: 'ERR_WAN_BAD_ARGUMENT', message: expect.stringContaining('layout version 2') });
  });
});

describe('wan-video generate, stopped in the decode, then wan-video decode', () => {
  it('keeps the latents, says how to finish, and decode gives the frames of an uninterrupted run', async () => {
    const refOut = path.join(dir, 'ref', 'frame-%04d.png');
    const ref = await runCli(['generate', ...LONG, '--out', refOut]);
    expect(ref.code, ref.stderr).toBe(0);

    const out = path.join(dir, 'stopped', 'frame-%04d.png');
    const run = startCli(['generate', ...LONG, '--out', out, '--json']);
    while (!run.stdout().includes('"stage":"decode"')) {
      if (run.child.exitCode !== null) break;
      await new Promise((r) => setTimeout(r, 10));
    }
    run.child.kill('SIGINT');
    const r = await run.done;
    expect(r.code, r.stderr).toBe(130);
    const error = jsonLines(r.stdout).at(-1)!;
    const kept = path.join(dir, 'stopped', 'frame.latents.safetensors');
    expect(error).toMatchObject({ event: 'error', code: 'ERR_WAN_ABORTED', latentsFile: kept });
    // Interrupted, not out of memory: the finish command decodes as generate did (whole frames).
    expect(error.finish).toBe(`wan-video decode ${kept} --out ${out}`);
    expect(error.message).toContain(`The denoised latents were saved in ${kept}; finish the video with: wan-video decode`);
    expect(error.message).not.toContain('error.latents');
    expect(await readdir(path.join(dir, 'stopped'))).toEqual(['frame.latents.safetensors']);

    const decodedOut = path.join(dir, 'decoded', 'frame-%04d.png');
    const d = await runCli(['decode', kept, '--out', decodedOut, '--json']);
    expect(d.code, d.stderr).toBe(0);
    expect(jsonLines(d.stdout).at(-1)).toMatchObject({ event: 'done', family: 't2v-a14b', width: 160, height: 96, numFrames: 41, fps: 16 });
    const [want, got] = [await frames(path.join(dir, 'ref')), await frames(path.join(dir, 'decoded'))];
    expect(got).toHaveLength(41);
    expect(got.every((f, i) => f.equals(want[i]))).toBe(true);
  });

  it('the finish command names the model, device and output as given, quoted for a shell, and tiles after running out of memory', () => {
    const flags = { model: "/models/it's here", device: 'cuda:1' as const, out: 'my video.mp4' };
    expect(finishCommand('my video.latents.safetensors', flags, true)).toBe(
      "wan-video decode 'my video.latents.safetensors' --model '/models/it'\\''s here' --device cuda:1 --out 'my video.mp4' --tiled",
    );
    expect(finishCommand('a.latents.safetensors', { out: 'a.mp4' }, false)).toBe('wan-video decode a.latents.safetensors --out a.mp4');
  });

  it('decode refuses latents of another model family, and a file that is not latents', async () => {
    const file = path.join(dir, 'fam.latents.safetensors');
    await saveLatents(file, float32Tensor([1, 16, 1, 2, 2]), { family: 't2v-a14b', fps: 16 });
    const wrong = await runCli(['decode', file, '--model', path.join(FIXTURES, 'ti2v-5b-tiny'), '--out', path.join(dir, 'never-%04d.png')]);
    expect(wrong.code).toBe(1);
    expect(wrong.stderr).toContain('ERR_WAN_BAD_ARGUMENT');
    expect(wrong.stderr).toContain('holds latents of a t2v-a14b model');
    const junk = path.join(dir, 'junk.safetensors');
    await writeFile(junk, 'not a safetensors file');
    const bad = await runCli(['decode', junk, '--out', path.join(dir, 'never-%04d.png')]);
    expect(bad.code).toBe(1);
    expect(bad.stderr).toMatch(/ERR_WAN_BAD_(CHECKPOINT|ARGUMENT)/);
    expect(bad.stderr).toContain(junk);
  });
});
