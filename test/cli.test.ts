import path from 'node:path';

import { beforeAll, describe, expect, it } from 'vitest';

import { deviceLine } from '../lib/cli/info.js';
import { native } from '../lib/native.js';
import { FIXTURES } from './helpers/fixtures.js';
import { buildCli, jsonLines, runCli } from './helpers/cli.js';

beforeAll(() => {
  buildCli();
});

const FAMILIES: Array<[string, string, string]> = [
  ['t2v-a14b-tiny', 't2v-a14b', 'WanPipeline'],
  ['i2v-a14b-tiny', 'i2v-a14b', 'WanImageToVideoPipeline'],
  ['ti2v-5b-tiny', 'ti2v-5b', 'WanPipeline'],
];

describe('wan-video info', () => {
  it('prints the runtime: libtorch version, CUDA, devices, ffmpeg', async () => {
    const r = await runCli(['info']);
    expect(r.code).toBe(0);
    const rt = native().runtimeInfo();
    expect(r.stdout).toContain(`libtorch   ${rt.libtorchVersion} (${rt.flavour} build)`);
    const cudaLine = rt.cudaDeviceCount > 0 ? `CUDA       available, fused kernels ${rt.fusedKernels ? 'on' : 'off (WAN_FUSED_KERNELS=0)'}` : `CUDA       not available: ${rt.cudaUnavailableReason}`;
    expect(r.stdout.split('\n')).toContain(cudaLine);
    expect(rt.cudaDeviceCount > 0 || rt.cudaUnavailableReason!.length > 0).toBe(true);
    expect(r.stdout).toMatch(/^device {5}cpu( \(.*\))?$/m);
    // A GPU's line, as the addon describes one (this machine may have none).
    expect(deviceLine({ type: 'cuda', name: 'cuda:0', index: 0, model: 'NVIDIA H100 80GB HBM3', totalMemory: 80 * 1024 ** 3, computeCapability: '9.0' })).toBe(
      'device     cuda:0 NVIDIA H100 80GB HBM3, compute capability 9.0 (80.0 GiB)',
    );
    expect(r.stdout).toMatch(/^ffmpeg {5}/m);
  });

  for (const [folder, family, pipelineClass] of FAMILIES) {
    it(`--model ${folder} prints family ${family}, its components and a memory estimate per offload mode`, async () => {
      const r = await runCli(['info', '--model', path.join(FIXTURES, folder)]);
      expect(r.code).toBe(0);
      expect(r.stdout).toContain(`family     ${family} (${pipelineClass})`);
      expect(r.stdout).toMatch(/^transformer +\d+ +[\d.]+K/m);
      expect(r.stdout).toMatch(/^vae +\d+/m);
      expect(/^transformer_2 /m.test(r.stdout)).toBe(family !== 'ti2v-5b');
      for (const mode of ['none', 'model', 'sequential']) expect(r.stdout).toMatch(new RegExp(`^  ${mode} +[\\d.]+ [KMG]iB`, 'm'));
    });
  }

  it('--json prints one JSON object per line with the tensor statistics of every component', async () => {
    const dir = path.join(FIXTURES, 't2v-a14b-tiny');
    const r = await runCli(['info', '--json', '--model', dir]);
    expect(r.code).toBe(0);
    const lines = jsonLines(r.stdout);
    expect(lines.map((l) => l.event)).toEqual(['runtime', 'model']);
    expect(lines[0].libtorchVersion).toBe(native().runtimeInfo().libtorchVersion);
    const model = lines[1];
    expect(model.family).toBe('t2v-a14b');
    expect(model.components.map((c: any) => c.name)).toEqual(['transformer', 'transformer_2', 'text_encoder', 'vae']);
    const listing = await native().describeTensors(path.join(dir, 'transformer'));
    const transformer = model.components[0];
    expect(transformer.tensors).toBe(listing.tensors.length);
    expect(transformer.parameters).toBe(listing.tensors.reduce((a, t) => a + t.shape.reduce((x, y) => x * y, 1), 0));
    expect(transformer.bytes).toBe(transformer.parameters * 4); // the fixtures are float32
    expect(transformer.dtypes).toEqual({ F32: listing.tensors.length });
    const { none, model: byModel, sequential } = model.memoryEstimate.estimates;
    expect(none.totalBytes).toBeGreaterThan(byModel.totalBytes);
    expect(byModel.totalBytes).toBeGreaterThan(sequential.totalBytes);
  });

  it('a folder that is not a model exits 1 naming the missing file', async () => {
    const r = await runCli(['info', '--model', FIXTURES]);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/ERR_WAN_BAD_CHECKPOINT.*model_index\.json/);
  });
});

describe('bad flags exit non-zero naming the flag', () => {
  const cases: Array<[string[], string]> = [
    [['generate', '--prompt', 'x', '--size', '1280'], '--size'],
    [['generate', '--prompt', 'x', '--size', '0x704'], '--size'],
    [['generate', '--prompt', 'x', '--frames', 'many'], '--frames'],
    [['generate', '--prompt', 'x', '--frames', '0'], '--frames'],
    [['generate', '--prompt', 'x', '--steps', '-3'], '--steps'],
    [['generate', '--prompt', 'x', '--guidance', 'high'], '--guidance'],
    [['generate', '--prompt', 'x', '--shift', '0'], '--shift'],
    [['generate', '--prompt', 'x', '--seed', '1.5'], '--seed'],
    [['generate', '--prompt', 'x', '--sampler', 'ddim'], '--sampler'],
    [['generate', '--prompt', 'x', '--device', 'tpu'], '--device'],
    [['generate', '--prompt', 'x', '--dtype', 'int8'], '--dtype'],
    [['generate', '--prompt', 'x', '--offload', 'half'], '--offload'],
    [['generate', '--prompt', 'x', '--bogus'], '--bogus'],
    [['generate', '--size', '64x64'], '--prompt'],
    [['generate', '--prompt', 'x', '--out', 'clip.avi'], '--out'],
    [['generate', '--prompt', 'x', '--image', 'no-such-image.png'], '--image'],
    [['info', '--size', 'big'], '--size'],
  ];
  for (const [args, flag] of cases) {
    it(`${args.slice(1).join(' ')} -> ${flag}`, async () => {
      const r = await runCli(args);
      expect(r.code).not.toBe(0);
      expect(r.code).not.toBeNull();
      expect(r.stderr).toContain(flag);
      // With --json, a script gets the error as its last line, whoever found it (commander or us).
      const json = await runCli([...args, '--json']);
      expect(json.code).toBe(r.code);
      expect(jsonLines(json.stdout).at(-1)).toMatchObject({ event: 'error', code: 'ERR_WAN_BAD_ARGUMENT', message: expect.stringContaining(flag) });
    });
  }

  it('--help and --version are not errors, with or without --json', async () => {
    for (const args of [['--help'], ['generate', '--help', '--json'], ['--version']]) {
      const r = await runCli(args);
      expect(r.code, args.join(' ')).toBe(0);
      expect(r.stdout).not.toMatch(/^\{"event":"error"/m);
    }
  });
});
