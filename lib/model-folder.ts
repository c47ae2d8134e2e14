// What a Diffusers-layout Wan2.2 folder holds: its model family (from model_index.json and the
// transformer config) and, per component, the tensors' dtypes, counts, bytes and parameters
// (read from the safetensors headers only).
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';

import { WanError } from './errors.js';
import type { MemoryModel } from './memory.js';
import { native } from './native.js';
import type { ModelFamily } from './types.js';

export const WEIGHT_COMPONENTS = ['transformer', 'transformer_2', 'text_encoder', 'vae'] as const;
export type WeightComponent = (typeof WEIGHT_COMPONENTS)[number];

export interface ComponentInfo {
  name: WeightComponent;
  /** Where the tensors were read from (a file, an index.json or a folder). */
  source: string;
  tensors: number;
  bytes: number;
  parameters: number;
  /** Safetensors dtype (F32, BF16, ...) -> number of tensors stored in it. */
  dtypes: Record<string, number>;
  /** DiT only: parameters of its largest `blocks.N`. */
  largestBlockParameters?: number;
}

export interface ModelFolderInfo {
  dir: string;
  family: ModelFamily;
  pipelineClass: string;
  /** Sub-folders and files of the layout, present or not. */
  present: Record<'model_index' | 'scheduler' | 'tokenizer' | WeightComponent, boolean>;
  components: ComponentInfo[];
  memoryModel: MemoryModel;
}

type Json = Record<string, unknown>;

function readJson(file: string, what: string): Json {
  if (!existsSync(file)) {
    throw new WanError('ERR_WAN_BAD_CHECKPOINT', `${file} is missing: ${what}`);
  }
  try {
    return JSON.parse(readFileSync(file, 'utf8')) as Json;
  } catch (err) {
    throw new WanError('ERR_WAN_BAD_CHECKPOINT', `${file} is not valid JSON (${(err as Error).message})`, { cause: err });
  }
}

const LAYOUT_HINT =
  'expected a Diffusers-layout Wan2.2 folder such as Wan-AI/Wan2.2-T2V-A14B-Diffusers, ' +
  'Wan-AI/Wan2.2-I2V-A14B-Diffusers or Wan-AI/Wan2.2-TI2V-5B-Diffusers';

// A model_index.json entry like ["diffusers", "WanTransformer3DModel"]; [null, null] means absent.
function declared(index: Json, key: string): boolean {
  const entry = index[key];
  return Array.isArray(entry) && entry.some((x) => x !== null);
}

/**
 * The family of a model folder:
 *   expand_timesteps, a z_dim-48 VAE or a 48-channel DiT        -> ti2v-5b
 *   transformer_2 present and transformer in_channels 16        -> t2v-a14b
 *   transformer_2 present and transformer in_channels 36        -> i2v-a14b
 * Anything else is ERR_WAN_BAD_CHECKPOINT naming what was found.
 */
export function detectFamily(dir: string): { family: ModelFamily; pipelineClass: string; transformer: Json; vae: Json } {
  const index = readJson(path.join(dir, 'model_index.json'), LAYOUT_HINT);
  const transformer = readJson(path.join(dir, 'transformer', 'config.json'), 'the DiT config (transformer/config.json)');
  const vaePath = path.join(dir, 'vae', 'config.json');
  const vae = existsSync(vaePath) ? readJson(vaePath, 'the VAE config') : {};
  const pipelineClass = String(index._class_name ?? '(no _class_name)');
  const inChannels = transformer.in_channels;
  const hasSecondExpert = declared(index, 'transformer_2') && existsSync(path.join(dir, 'transformer_2'));

  if (index.expand_timesteps === true || vae.z_dim === 48 || inChannels === 48) {
    return { family: 'ti2v-5b', pipelineClass, transformer, vae };
  }
  if (hasSecondExpert && inChannels === 16) return { family: 't2v-a14b', pipelineClass, transformer, vae };
  if (hasSecondExpert && inChannels === 36) return { family: 'i2v-a14b', pipelineClass, transformer, vae };
  throw new WanError(
    'ERR_WAN_BAD_CHECKPOINT',
    `${dir}: not a Wan2.2 model this package runs (${pipelineClass}, transformer in_channels ${inChannels}, ` +
      `${hasSecondExpert ? 'with' : 'without'} transformer_2); ${LAYOUT_HINT}`,
  );
}

// Bytes per element of safetensors dtypes.
const DTYPE_BYTES: Record<string, number> = {
  F64: 8, I64: 8, U64: 8, F32: 4, I32: 4, U32: 4, F16: 2, BF16: 2, I16: 2, U16: 2,
  F8_E4M3: 1, F8_E5M2: 1, I8: 1, U8: 1, BOOL: 1,
};

async function describeComponent(dir: string, name: WeightComponent): Promise<ComponentInfo> {
  const listing = await native().describeTensors(path.join(dir, name));
  const dtypes: Record<string, number> = {};
  const blockParameters = new Map<number, number>();
  let bytes = 0;
  let parameters = 0;
  for (const t of listing.tensors) {
    const count = t.shape.reduce((a, b) => a * b, 1);
    parameters += count;
    bytes += count * (DTYPE_BYTES[t.dtype] ?? 0);
    dtypes[t.dtype] = (dtypes[t.dtype] ?? 0) + 1;
    const block = /^blocks\.(\d+)\./.exec(t.name);
    if (block) blockParameters.set(Number(block[1]), (blockParameters.get(Number(block[1])) ?? 0) + count);
  }
  const info: ComponentInfo = { name, source: listing.source, tensors: listing.tensors.length, bytes, parameters, dtypes };
  if (name.startsWith('transformer')) info.largestBlockParameters = Math.max(0, ...blockParameters.values());
  return info;
}

function numberField(config: Json, key: string, fallback: number): number {
  const v = config[key];
  return typeof v === 'number' ? v : fallback;
}

/** Family, layout and per-component tensor statistics of a model folder (headers only). */
export async function describeModelFolder(dir: string): Promise<ModelFolderInfo> {
  const { family, pipelineClass, transformer, vae } = detectFamily(dir);
  const has = (p: string) => existsSync(path.join(dir, p));
  const present = {
    model_index: has('model_index.json'),
    scheduler: has('scheduler/scheduler_config.json'),
    tokenizer: has('tokenizer'),
    transformer: has('transformer'),
    transformer_2: has('transformer_2'),
    text_encoder: has('text_encoder'),
    vae: has('vae'),
  };
  const components: ComponentInfo[] = [];
  for (const name of WEIGHT_COMPONENTS) if (present[name]) components.push(await describeComponent(dir, name));
  const params = (name: WeightComponent) => components.find((c) => c.name === name)?.parameters ?? 0;

  const patch = Array.isArray(transformer.patch_size) ? (transformer.patch_size as number[]) : [1, 2, 2];
  const zDim = numberField(vae, 'z_dim', 16);
  const memoryModel: MemoryModel = {
    family,
    parameters: {
      transformer: params('transformer'),
      transformer_2: present.transformer_2 ? params('transformer_2') : undefined,
      text_encoder: params('text_encoder'),
      vae: params('vae'),
    },
    largestBlockParameters: Math.max(0, ...components.map((c) => c.largestBlockParameters ?? 0)),
    dit: {
      dim: numberField(transformer, 'num_attention_heads', 40) * numberField(transformer, 'attention_head_dim', 128),
      ffnDim: numberField(transformer, 'ffn_dim', 13824),
      patchSize: [patch[0], patch[1], patch[2]],
    },
    vae: {
      scaleSpatial: numberField(vae, 'scale_factor_spatial', zDim === 48 ? 16 : 8),
      scaleTemporal: numberField(vae, 'scale_factor_temporal', 4),
      topWidth: numberField(vae, 'decoder_base_dim', numberField(vae, 'base_dim', 96)),
      patchSize: numberField(vae, 'patch_size', 1),
    },
  };
  return { dir, family, pipelineClass, present, components, memoryModel };
}
