// Config readers (native/core/model_config.cpp) through readModelConfig: every fixture config parses
// to the expected typed values, and each missing or invalid field is ERR_WAN_BAD_CHECKPOINT naming
// the file and the field.
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';

import type { ModelConfigKind } from '../binding.js';
import { native } from '../lib/native.js';

const fixtures = path.join(import.meta.dirname, 'fixtures/wan-tiny');
const dir = mkdtempSync(path.join(tmpdir(), 'wan-config-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const families = ['t2v-a14b-tiny', 'i2v-a14b-tiny', 'ti2v-5b-tiny'];
const configFile: Record<ModelConfigKind, string> = {
  transformer: 'transformer/config.json',
  text_encoder: 'text_encoder/config.json',
  vae: 'vae/config.json',
  scheduler: 'scheduler/scheduler_config.json',
  model_index: 'model_index.json',
};

describe('every fixture config parses', () => {
  for (const family of families) {
    it(family, () => {
      const root = path.join(fixtures, family);
      for (const kind of Object.keys(configFile) as ModelConfigKind[]) {
        const file = path.join(root, configFile[kind]);
        const raw = JSON.parse(readFileSync(file, 'utf8'));
        // A component folder and the config file itself give the same result.
        const viaDir = native().readModelConfig(kind === 'model_index' ? root : path.dirname(file), kind);
        const viaFile = native().readModelConfig(file, kind);
        expect(viaDir).toEqual(viaFile);
        expect(viaFile.file).toBe(file);
        if (kind === 'transformer') {
          const c = native().readModelConfig(file, 'transformer');
          expect(c).toMatchObject({
            inChannels: raw.in_channels, outChannels: raw.out_channels, numHeads: raw.num_attention_heads, headDim: raw.attention_head_dim,
            numLayers: raw.num_layers, ffnDim: raw.ffn_dim, freqDim: raw.freq_dim, textDim: raw.text_dim, patchSize: raw.patch_size,
            eps: raw.eps, crossAttnNorm: raw.cross_attn_norm, qkNorm: 'rms_norm_across_heads',
          });
          expect(c.dim).toBe(raw.num_attention_heads * raw.attention_head_dim);
        } else if (kind === 'text_encoder') {
          expect(native().readModelConfig(file, 'text_encoder')).toMatchObject({
            dModel: raw.d_model, dKv: raw.d_kv, dFf: raw.d_ff, numLayers: raw.num_layers, numHeads: raw.num_heads, vocabSize: raw.vocab_size,
            relativeAttentionNumBuckets: raw.relative_attention_num_buckets, relativeAttentionMaxDistance: raw.relative_attention_max_distance,
            eps: raw.layer_norm_epsilon, feedForwardProj: 'gated-gelu',
          });
        } else if (kind === 'vae') {
          const c = native().readModelConfig(file, 'vae');
          expect(c).toMatchObject({
            baseDim: raw.base_dim, decoderBaseDim: raw.decoder_base_dim ?? raw.base_dim, zDim: raw.z_dim, numResBlocks: raw.num_res_blocks,
            patchSize: raw.patch_size ?? 1, dimMult: raw.dim_mult, temporalDownsample: raw.temperal_downsample, isResidual: raw.is_residual,
            latentsMean: raw.latents_mean, latentsStd: raw.latents_std, scaleFactorSpatial: raw.scale_factor_spatial,
          });
        } else if (kind === 'scheduler') {
          expect(native().readModelConfig(file, 'scheduler')).toMatchObject({
            className: 'UniPCMultistepScheduler', numTrainTimesteps: raw.num_train_timesteps, solverOrder: raw.solver_order, flowShift: raw.flow_shift,
            predictionType: raw.prediction_type, solverType: raw.solver_type, useFlowSigmas: raw.use_flow_sigmas, finalSigmasType: raw.final_sigmas_type,
            disableCorrector: raw.disable_corrector,
          });
        } else {
          const m = native().readModelConfig(file, 'model_index');
          expect(m.className).toBe(raw._class_name);
          expect(m.boundaryRatio).toBe(raw.boundary_ratio ?? undefined);
          expect(m.expandTimesteps).toBe(raw.expand_timesteps);
          expect(m.hasTransformer2).toBe(raw.transformer_2[0] !== null);
        }
      }
    });
  }

  it('the families differ as the models do', () => {
    const ti2v = native().readModelConfig(path.join(fixtures, 'ti2v-5b-tiny/model_index.json'), 'model_index');
    const i2v = native().readModelConfig(path.join(fixtures, 'i2v-a14b-tiny/model_index.json'), 'model_index');
    expect(ti2v).toMatchObject({ className: 'WanPipeline', expandTimesteps: true, hasTransformer2: false });
    expect(i2v).toMatchObject({ className: 'WanImageToVideoPipeline', boundaryRatio: 0.9, hasTransformer2: true });
    expect(native().readModelConfig(path.join(fixtures, 'ti2v-5b-tiny/vae'), 'vae')).toMatchObject({ zDim: 48, patchSize: 2, isResidual: true });
    expect(native().readModelConfig(path.join(fixtures, 'i2v-a14b-tiny/vae'), 'vae')).toMatchObject({ zDim: 16, patchSize: 1, decoderBaseDim: 4 });
  });
});

// Each case edits one fixture config; the error must name the written file and the field.
interface BadCase {
  kind: ModelConfigKind;
  name: string;
  field: string;
  edit: (c: any) => void;
  says?: RegExp;
}

const bad: BadCase[] = [
  { kind: 'transformer', name: 'missing num_layers', field: 'num_layers', edit: (c) => delete c.num_layers, says: /is missing/ },
  { kind: 'transformer', name: 'num_attention_heads a string', field: 'num_attention_heads', edit: (c) => (c.num_attention_heads = '3'), says: /must be an integer/ },
  { kind: 'transformer', name: 'fractional ffn_dim', field: 'ffn_dim', edit: (c) => (c.ffn_dim = 120.5), says: /must be an integer/ },
  { kind: 'transformer', name: 'zero num_layers', field: 'num_layers', edit: (c) => (c.num_layers = 0), says: /between 1 and/ },
  { kind: 'transformer', name: 'patch_size of two entries', field: 'patch_size', edit: (c) => (c.patch_size = [2, 2]), says: /3 entries/ },
  { kind: 'transformer', name: 'patch_size missing', field: 'patch_size', edit: (c) => delete c.patch_size },
  { kind: 'transformer', name: 'other qk_norm', field: 'qk_norm', edit: (c) => (c.qk_norm = 'layer_norm'), says: /only 'rms_norm_across_heads'/ },
  { kind: 'transformer', name: 'odd attention_head_dim', field: 'attention_head_dim', edit: (c) => (c.attention_head_dim = 21), says: /even/ },
  // Loaded, then every forward failed (the timestep embedding has freq_dim/2 cosines and sines).
  { kind: 'transformer', name: 'odd freq_dim', field: 'freq_dim', edit: (c) => (c.freq_dim = 255), says: /must be even/ },
  { kind: 'transformer', name: 'Wan2.1 image_dim', field: 'image_dim', edit: (c) => (c.image_dim = 1280), says: /not supported/ },
  { kind: 'transformer', name: 'cross_attn_norm not a boolean', field: 'cross_attn_norm', edit: (c) => (c.cross_attn_norm = 1), says: /true or false/ },
  { kind: 'transformer', name: 'eps not finite-number', field: 'eps', edit: (c) => (c.eps = 'small'), says: /finite number/ },
  { kind: 'text_encoder', name: 'missing d_model', field: 'd_model', edit: (c) => delete c.d_model, says: /is missing/ },
  { kind: 'text_encoder', name: 'negative vocab_size', field: 'vocab_size', edit: (c) => (c.vocab_size = -1), says: /between 1 and/ },
  { kind: 'text_encoder', name: 'relu feed_forward_proj', field: 'feed_forward_proj', edit: (c) => (c.feed_forward_proj = 'relu'), says: /gated-gelu/ },
  { kind: 'text_encoder', name: 'zero relative buckets', field: 'relative_attention_num_buckets', edit: (c) => (c.relative_attention_num_buckets = 0) },
  { kind: 'vae', name: 'missing z_dim', field: 'z_dim', edit: (c) => delete c.z_dim, says: /is missing/ },
  { kind: 'vae', name: 'latents_std too short', field: 'latents_std', edit: (c) => c.latents_std.pop(), says: /z_dim entries/ },
  { kind: 'vae', name: 'latents_mean too long', field: 'latents_mean', edit: (c) => c.latents_mean.push(0), says: /z_dim entries/ },
  { kind: 'vae', name: 'zero in latents_std', field: 'latents_std', edit: (c) => (c.latents_std[3] = 0), says: /positive/ },
  { kind: 'vae', name: 'latents_mean holding a string', field: 'latents_mean', edit: (c) => (c.latents_mean[0] = 'x'), says: /finite numbers/ },
  { kind: 'vae', name: 'temperal_downsample wrong length', field: 'temperal_downsample', edit: (c) => c.temperal_downsample.push(true), says: /one entry fewer/ },
  { kind: 'vae', name: 'temperal_downsample of numbers', field: 'temperal_downsample', edit: (c) => (c.temperal_downsample = [0, 1, 1]), says: /booleans/ },
  { kind: 'vae', name: 'empty dim_mult', field: 'dim_mult', edit: (c) => ((c.dim_mult = []), (c.temperal_downsample = [])), says: /1 to 8 entries/ },
  { kind: 'vae', name: 'in_channels not matching patch_size', field: 'in_channels', edit: (c) => (c.in_channels = 4), says: /3 \* patch_size/ },
  { kind: 'scheduler', name: 'negative flow_shift', field: 'flow_shift', edit: (c) => (c.flow_shift = -1), says: /positive/ },
  { kind: 'scheduler', name: 'zero num_train_timesteps', field: 'num_train_timesteps', edit: (c) => (c.num_train_timesteps = 0) },
  // Values that loaded and then gave NaN (or out-of-range indices) in every generation:
  { kind: 'scheduler', name: 'one num_train_timesteps', field: 'num_train_timesteps', edit: (c) => (c.num_train_timesteps = 1), says: /between 2 and/ },
  { kind: 'transformer', name: 'negative eps', field: 'eps', edit: (c) => (c.eps = -1), says: /positive number below 1/ },
  { kind: 'transformer', name: 'zero eps', field: 'eps', edit: (c) => (c.eps = 0), says: /positive number below 1/ },
  { kind: 'text_encoder', name: 'negative layer_norm_epsilon', field: 'layer_norm_epsilon', edit: (c) => (c.layer_norm_epsilon = -1e9), says: /positive number below 1/ },
  { kind: 'text_encoder', name: 'max distance inside the exact buckets', field: 'relative_attention_max_distance', edit: (c) => ((c.relative_attention_num_buckets = 32), (c.relative_attention_max_distance = 8)), says: /greater than relative_attention_num_buckets \/ 4 = 8/ },
  { kind: 'text_encoder', name: 'two relative buckets', field: 'relative_attention_num_buckets', edit: (c) => (c.relative_attention_num_buckets = 2), says: /at least 4/ },
  { kind: 'scheduler', name: 'use_flow_sigmas a string', field: 'use_flow_sigmas', edit: (c) => (c.use_flow_sigmas = 'yes'), says: /true or false/ },
  { kind: 'scheduler', name: 'solver_type a number', field: 'solver_type', edit: (c) => (c.solver_type = 2), says: /must be a string/ },
  { kind: 'model_index', name: 'missing _class_name', field: '_class_name', edit: (c) => delete c._class_name, says: /is missing/ },
  { kind: 'model_index', name: 'other pipeline class', field: '_class_name', edit: (c) => (c._class_name = 'StableDiffusionPipeline'), says: /WanPipeline/ },
  { kind: 'model_index', name: 'boundary_ratio out of range', field: 'boundary_ratio', edit: (c) => (c.boundary_ratio = 1.5), says: /between 0 and 1/ },
];

describe('invalid configs are ERR_WAN_BAD_CHECKPOINT naming file and field', () => {
  for (const c of bad) {
    it(`${c.kind}: ${c.name}`, () => {
      const source = path.join(fixtures, 'ti2v-5b-tiny', configFile[c.kind]);
      const json = JSON.parse(readFileSync(source, 'utf8'));
      c.edit(json);
      const folder = path.join(dir, `${c.kind}-${c.name.replace(/[^a-z0-9]+/gi, '-')}`);
      mkdirSync(folder, { recursive: true });
      const file = path.join(folder, path.basename(source));
      writeFileSync(file, JSON.stringify(json, null, 2));
      let err: any;
      try {
        native().readModelConfig(file, c.kind);
      } catch (e) {
        err = e;
      }
      expect(err, 'must throw').toBeDefined();
      expect(err.code).toBe('ERR_WAN_BAD_CHECKPOINT');
      expect(err.message).toContain(file);
      expect(err.message).toContain(`'${c.field}'`);
      if (c.says) expect(err.message).toMatch(c.says);
    });
  }

  it('a config that is not JSON, not an object, or missing', () => {
    const notJson = path.join(dir, 'not-json.json');
    writeFileSync(notJson, '{"in_channels": 16,');
    expect(() => native().readModelConfig(notJson, 'transformer')).toThrow(expect.objectContaining({ code: 'ERR_WAN_BAD_CHECKPOINT', message: expect.stringMatching(/not-json\.json is not valid JSON/) }));
    const array = path.join(dir, 'array.json');
    writeFileSync(array, '[1, 2]');
    expect(() => native().readModelConfig(array, 'vae')).toThrow(expect.objectContaining({ code: 'ERR_WAN_BAD_CHECKPOINT', message: expect.stringMatching(/array\.json: expected a JSON object/) }));
    const missingDir = path.join(dir, 'no-such-component');
    expect(() => native().readModelConfig(missingDir, 'text_encoder')).toThrow(expect.objectContaining({ code: 'ERR_WAN_BAD_CHECKPOINT', message: expect.stringContaining(missingDir) }));
    const emptyDir = path.join(dir, 'empty-component');
    mkdirSync(emptyDir, { recursive: true });
    expect(() => native().readModelConfig(emptyDir, 'scheduler')).toThrow(
      expect.objectContaining({ code: 'ERR_WAN_BAD_CHECKPOINT', message: expect.stringContaining(path.join(emptyDir, 'scheduler_config.json')) }),
    );
  });

  it('a config of more JSON values than any real one is refused by its size, quickly', () => {
    // Valid fields plus 2^20 zeros (2 MB): parsed, that cost ~100 bytes of memory per value.
    const json = JSON.parse(readFileSync(path.join(fixtures, 'ti2v-5b-tiny', configFile.transformer), 'utf8'));
    const file = path.join(dir, 'many-values', 'config.json');
    mkdirSync(path.dirname(file), { recursive: true });
    writeFileSync(file, JSON.stringify({ ...json, junk: new Array(2 ** 20 + 1).fill(0) }));
    const start = Date.now();
    expect(() => native().readModelConfig(file, 'transformer')).toThrow(
      expect.objectContaining({ code: 'ERR_WAN_BAD_CHECKPOINT', message: expect.stringMatching(/config\.json has \d+ bytes, more than the 1048576/) }),
    );
    expect(Date.now() - start).toBeLessThan(2000);
  });

  it('an unknown kind is ERR_WAN_BAD_ARGUMENT', () => {
    expect(() => native().readModelConfig(fixtures, 'unet' as ModelConfigKind)).toThrow(expect.objectContaining({ code: 'ERR_WAN_BAD_ARGUMENT', message: expect.stringContaining("'unet'") }));
  });
});
