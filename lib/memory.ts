// A first-order estimate of the device memory a generation needs, per offload mode.
//
//   estimate(mode) = resident weights(mode) + activations + OVERHEAD
//
//   resident weights, from the parameter counts in the checkpoint (not its stored dtype):
//     DiT experts and text encoder in the compute dtype, VAE in its own dtype (default float32);
//     the text encoder counts only when it runs on the device (not with --t5-cpu);
//     'none'       = every component resident at once;
//     'model'      = the largest component (components move to the device one at a time);
//     'sequential' = the largest single DiT block (blocks stream in one at a time).
//   activations = max(DiT working set, VAE decode working set):
//     DiT: tokens x (DIT_DIM_FACTOR x dim + DIT_FFN_FACTOR x ffn_dim) x compute-dtype bytes, where
//       tokens = latent frames x (H / spatial / patch_h) x (W / spatial / patch_w); attention is
//       assumed fused (no tokens^2 matrix); CFG runs cond and uncond as two batch-1 passes.
//     VAE: one latent frame decodes to up to 4 frames at full resolution:
//       4 x H x W x decoder top width x VAE_WORKSET_FACTOR x VAE-dtype bytes
//       (the Wan2.2 VAE's top level runs at half resolution: patch_size 2).
//   OVERHEAD: CUDA context, allocator slack, latents and embeddings.
// The constants are deliberately round; measured peaks belong in bench/RESULTS.md.
import type { Dtype, ModelFamily, Offload } from './types.js';

export const DIT_DIM_FACTOR = 10; // residual, norm, q, k, v, attention out, projection, modulation temporaries
export const DIT_FFN_FACTOR = 2; // FFN hidden and its GELU output
export const VAE_WORKSET_FACTOR = 6; // conv input/output, residual, causal cache, norm temporaries
export const OVERHEAD_BYTES = 1.5 * 1024 ** 3;

export function dtypeBytes(dtype: Dtype): number {
  return dtype === 'float32' ? 4 : 2;
}

export interface MemoryModel {
  family: ModelFamily;
  /** Parameter counts per component (transformer_2 only for A14B). */
  parameters: { transformer: number; transformer_2?: number; text_encoder: number; vae: number };
  /** Parameters of the largest `blocks.N` of any DiT expert. */
  largestBlockParameters: number;
  dit: { dim: number; ffnDim: number; patchSize: [number, number, number] };
  vae: { scaleSpatial: number; scaleTemporal: number; topWidth: number; patchSize: number };
}

export interface MemoryRequest {
  width: number;
  height: number;
  numFrames: number;
  dtype: Dtype;
  vaeDtype?: Dtype;
  /** false with --t5-cpu: the text encoder stays in host memory. */
  textEncoderOnDevice?: boolean;
}

export interface MemoryEstimate {
  offload: Offload;
  weightsBytes: number;
  activationBytes: number;
  overheadBytes: number;
  totalBytes: number;
}

/** Sizes of the resident parts for one request (see the formula at the top of this file). */
export function estimateMemory(model: MemoryModel, request: MemoryRequest): Record<Offload, MemoryEstimate> {
  const bytes = dtypeBytes(request.dtype);
  const vaeBytes = dtypeBytes(request.vaeDtype ?? 'float32');
  const p = model.parameters;
  const components = [
    p.transformer * bytes,
    (p.transformer_2 ?? 0) * bytes,
    request.textEncoderOnDevice === false ? 0 : p.text_encoder * bytes,
    p.vae * vaeBytes,
  ];
  const weights: Record<Offload, number> = {
    none: components.reduce((a, b) => a + b, 0),
    model: Math.max(...components),
    sequential: model.largestBlockParameters * bytes,
  };

  const latentFrames = Math.floor((request.numFrames - 1) / model.vae.scaleTemporal) + 1;
  const [, ph, pw] = model.dit.patchSize;
  const tokens =
    latentFrames *
    Math.ceil(request.height / model.vae.scaleSpatial / ph) *
    Math.ceil(request.width / model.vae.scaleSpatial / pw);
  const ditActivations = tokens * (DIT_DIM_FACTOR * model.dit.dim + DIT_FFN_FACTOR * model.dit.ffnDim) * bytes;
  const topPixels = (request.width * request.height) / (model.vae.patchSize * model.vae.patchSize);
  const vaeActivations = 4 * topPixels * model.vae.topWidth * VAE_WORKSET_FACTOR * vaeBytes;
  const activationBytes = Math.max(ditActivations, vaeActivations);

  const estimate = (offload: Offload): MemoryEstimate => ({
    offload,
    weightsBytes: weights[offload],
    activationBytes,
    overheadBytes: OVERHEAD_BYTES,
    totalBytes: weights[offload] + activationBytes + OVERHEAD_BYTES,
  });
  return { none: estimate('none'), model: estimate('model'), sequential: estimate('sequential') };
}

/** Default size, frames and fps of each family (the released checkpoints' defaults). */
export const FAMILY_DEFAULTS: Record<ModelFamily, { width: number; height: number; numFrames: number; fps: number }> = {
  't2v-a14b': { width: 1280, height: 720, numFrames: 81, fps: 16 },
  'i2v-a14b': { width: 1280, height: 720, numFrames: 81, fps: 16 },
  'ti2v-5b': { width: 1280, height: 704, numFrames: 121, fps: 24 },
};

export function formatBytes(n: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) {
    n /= 1024;
    i++;
  }
  return `${i === 0 ? n : n.toFixed(n >= 100 ? 0 : 1)} ${units[i]}`;
}
