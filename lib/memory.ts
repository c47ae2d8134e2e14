// An estimate of the peak device memory a generation needs, per offload mode, before loading.
//
// A generation has three phases; the peak is the largest of
//     resident weights(mode, phase) + activations(phase)      plus OVERHEAD_BYTES.
//
// Resident weights, from the checkpoint's parameter counts: DiT experts and text encoder in the
// compute dtype (A14B expert bf16 ~28.6 GB each, umt5-xxl bf16 ~11.4 GB), the VAE in its own dtype
// (float32 by default: Wan2.1 VAE ~0.5 GB, Wan2.2 VAE ~2.8 GB). The text encoder counts only when
// it runs on the device (textEncoderOnDevice, i.e. textEncoderDevice 'cuda'), and is freed after
// encoding in every mode.
//   'none'       text: everything loaded up front (experts + VAE + text encoder);
//                denoise, decode: experts + VAE.
//   'model'      one component at a time: text encoder, then the larger expert, then the VAE
//                (a swap overlaps compute only where both fit: the two experts are never resident
//                together).
//   'sequential' DiT blocks stream from pinned host memory: the non-block DiT weights (patch and
//                condition embedders, head: ~8*dim^2 + (4096 + 256)*dim parameters) stay, plus at
//                most three blocks (3 x largest block: the one the GPU may still be running, the
//                current one and the prefetched next one); the text encoder whole (when on the
//                device); the VAE whole but decoding in tiles (see below).
//
// Activations, counted from the code paths, per video (a batch of B videos runs as one forward and
// one decode: B times the activations; CFG runs cond and uncond one after the other; attention is
// fused, so no tokens^2 matrix). Under 'sequential' the two passes
// run block by block, so that each streamed block visits once per step: the pass not running holds
// its hidden state, tokens x dim x b more (CFG_HELD_STATES).
//   DiT, tokens = latent frames x (H / spatial / patch_h) x (W / spatial / patch_w), b = compute
//   dtype bytes. The larger of
//     attention phase: tokens x dim x (5b + 18): the residual, q, k, v and the attention output in
//       the compute dtype (5b), float32 temporaries of RMSNorm/RoPE on one projection (4 copies x
//       4 B = 16), and 2 B of allocator rounding;
//     FFN phase: tokens x (2b x ffn + (2b + 8) x dim): the FFN projection and its GELU (2b per ffn
//       element), the residual and normed input (2b) and two float32 temporaries (upcast, gated sum).
//     A14B 1280x720x81 bf16: 75,600 x 5120 x 28 B = 10.8 GB (attention phase).
//   Text encode: TEXT_ENCODE_ACTIVATION_BYTES (umt5-xxl at 512 tokens: hidden states, the gated FFN
//     (3 x 10240 per token) in float32 and 64 heads x 512^2 scores: ~0.2 GB).
//   VAE decode: one latent frame decodes to up to 4 frames; the working set at the decoder's top
//     (full-resolution) level is 4 x pixels x top width x VAE_WORKSET_FACTOR x VAE dtype bytes,
//     pixels = H x W / patch^2 (the Wan2.2 VAE's top level runs at half resolution: patch 2), or one
//     tile's pixels with tiled decode (vaeTile, default VAE_DEFAULT_TILE under 'sequential'); plus the
//     decoded video, numFrames x H x W x 3 x VAE dtype bytes.
//   OVERHEAD_BYTES: CUDA context, cuBLAS/cuDNN workspaces, allocator slack, latents, embeddings.
// The factors are counted, not measured: bench/RESULTS.md records measured peaks to check them
// (wan_bench reports peak_allocated_bytes and weight_bytes per component).
import type { Dtype, ModelFamily, Offload } from './types.js';

/** Order of preference: the fastest mode first (least data movement). */
export const OFFLOAD_MODES: readonly Offload[] = ['none', 'model', 'sequential'];

/** float32 temporaries per (token x dim) in the DiT's attention phase, in bytes (see above). */
export const DIT_ATTENTION_F32_BYTES = 18;
/** Compute-dtype copies per (token x dim) in the attention phase: residual, q, k, v, attention out. */
export const DIT_ATTENTION_DTYPE_COPIES = 5;
/** float32 bytes per (token x dim) in the FFN phase (upcast and gated sum). */
export const DIT_FFN_F32_BYTES = 8;
export const VAE_WORKSET_FACTOR = 8; // input, conv output, norm/activation temporaries (~3) + causal caches of the top-level convs (~4) + slack
export const VAE_DEFAULT_TILE = 256; // pixels: diffusers' tile_sample_min_height/width
export const TEXT_ENCODE_ACTIVATION_BYTES = 256 * 1024 ** 2;
export const OVERHEAD_BYTES = 1.5 * 1024 ** 3;
/** 'sequential': DiT blocks on the device at once (native/models/wan_transformer.cpp bounds its look-ahead to this). */
export const STREAMED_BLOCKS = 3;
/** 'sequential': hidden states held by the CFG pass not running (WanTransformer::forwardEach). */
export const CFG_HELD_STATES = 1;
const TEXT_DIM = 4096; // umt5-xxl d_model: the DiT's text embedder input in every Wan2.2 model
const FREQ_DIM = 256;

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
  /** false with --t5-cpu (textEncoderDevice 'cpu'): the text encoder stays in host memory. */
  textEncoderOnDevice?: boolean;
  /** Videos made by one call (generateBatch: prompts x numVideosPerPrompt; decode: latent rows). Default 1. */
  batch?: number;
  /** Tiled VAE decode with square tiles of this many pixels; 0 = whole frames. Default: whole
   * frames, except VAE_DEFAULT_TILE under 'sequential'. */
  vaeTile?: number;
}

export type MemoryPhase = 'text' | 'denoise' | 'decode';

export interface MemoryEstimate {
  offload: Offload;
  /** The phase with the largest need. */
  phase: MemoryPhase;
  /** Weights resident during that phase. */
  weightsBytes: number;
  /** Activations of that phase. */
  activationBytes: number;
  overheadBytes: number;
  totalBytes: number;
}

/** Tokens the DiT sees for a request (latent frames x patches per frame). */
export function ditTokens(model: MemoryModel, request: Pick<MemoryRequest, 'width' | 'height' | 'numFrames'>): number {
  const latentFrames = Math.floor((request.numFrames - 1) / model.vae.scaleTemporal) + 1;
  const [pt, ph, pw] = model.dit.patchSize;
  return (
    Math.ceil(latentFrames / pt) *
    Math.ceil(request.height / model.vae.scaleSpatial / ph) *
    Math.ceil(request.width / model.vae.scaleSpatial / pw)
  );
}

/** Peak DiT activations of one forward (see the formula at the top of this file). */
export function ditActivationBytes(model: MemoryModel, tokens: number, dtype: Dtype): number {
  const b = dtypeBytes(dtype);
  const { dim, ffnDim } = model.dit;
  const attention = tokens * dim * (DIT_ATTENTION_DTYPE_COPIES * b + DIT_ATTENTION_F32_BYTES);
  const ffn = tokens * (2 * b * ffnDim + (2 * b + DIT_FFN_F32_BYTES) * dim);
  return Math.max(attention, ffn);
}

/** Peak VAE decode activations (plus the decoded video) for whole frames or `tile`-pixel tiles. */
export function vaeDecodeBytes(model: MemoryModel, request: MemoryRequest, tile: number): number {
  const bytes = dtypeBytes(request.vaeDtype ?? 'float32');
  const framePixels = request.width * request.height;
  const pixels = tile > 0 ? Math.min(framePixels, tile * tile) : framePixels;
  const topPixels = pixels / (model.vae.patchSize * model.vae.patchSize);
  const workset = 4 * topPixels * model.vae.topWidth * VAE_WORKSET_FACTOR * bytes;
  const video = request.numFrames * framePixels * 3 * bytes;
  return (workset + video) * (request.batch ?? 1);
}

/** Peak device memory per offload mode for one request (see the formula at the top of this file). */
export function estimateMemory(model: MemoryModel, request: MemoryRequest): Record<Offload, MemoryEstimate> {
  const bytes = dtypeBytes(request.dtype);
  const vaeBytes = dtypeBytes(request.vaeDtype ?? 'float32');
  const p = model.parameters;
  const expert1 = p.transformer * bytes;
  const expert2 = (p.transformer_2 ?? 0) * bytes;
  const textEncoder = request.textEncoderOnDevice === false ? 0 : p.text_encoder * bytes;
  const vae = p.vae * vaeBytes;
  const { dim } = model.dit;
  const ditNonBlock = Math.min(p.transformer, 8 * dim * dim + (TEXT_DIM + FREQ_DIM) * dim) * bytes;
  const streamedDit = ditNonBlock + STREAMED_BLOCKS * model.largestBlockParameters * bytes;

  const textActivations = textEncoder > 0 ? TEXT_ENCODE_ACTIVATION_BYTES : 0;
  const tokens = ditTokens(model, request);
  const batch = request.batch ?? 1;
  const ditActivations = batch * ditActivationBytes(model, tokens, request.dtype);
  const streamedDitActivations = ditActivations + batch * CFG_HELD_STATES * tokens * dim * bytes;
  const decode = (mode: Offload) =>
    vaeDecodeBytes(model, request, request.vaeTile ?? (mode === 'sequential' ? VAE_DEFAULT_TILE : 0));

  const phases: Record<Offload, Array<[MemoryPhase, number, number]>> = {
    none: [
      ['text', textEncoder + expert1 + expert2 + vae, textActivations],
      ['denoise', expert1 + expert2 + vae, ditActivations],
      ['decode', expert1 + expert2 + vae, decode('none')],
    ],
    model: [
      ['text', textEncoder, textActivations],
      ['denoise', Math.max(expert1, expert2), ditActivations],
      ['decode', vae, decode('model')],
    ],
    sequential: [
      ['text', textEncoder, textActivations],
      ['denoise', streamedDit, streamedDitActivations],
      ['decode', vae, decode('sequential')],
    ],
  };

  const estimate = (offload: Offload): MemoryEstimate => {
    let best: MemoryEstimate | undefined;
    for (const [phase, weightsBytes, activationBytes] of phases[offload]) {
      const totalBytes = weightsBytes + activationBytes + OVERHEAD_BYTES;
      if (!best || totalBytes > best.totalBytes) best = { offload, phase, weightsBytes, activationBytes, overheadBytes: OVERHEAD_BYTES, totalBytes };
    }
    return best!;
  };
  return { none: estimate('none'), model: estimate('model'), sequential: estimate('sequential') };
}

/**
 * The cheapest (fastest) offload mode whose estimate fits in `freeBytes`, in the order none, model,
 * sequential, starting at `from`; undefined when none fits. Used for ERR_WAN_OOM messages ("would fit
 * with offload: 'model'").
 */
export function suggestOffload(estimates: Record<Offload, MemoryEstimate>, freeBytes: number, from: Offload = 'none'): Offload | undefined {
  return OFFLOAD_MODES.slice(OFFLOAD_MODES.indexOf(from)).find((mode) => estimates[mode].totalBytes <= freeBytes);
}

/** A change of load or generate options under which a request fits (see suggestFit). */
export interface FitSuggestion {
  offload: Offload;
  /** Move the text encoder to the CPU (textEncoderDevice 'cpu'). */
  textEncoderOnCpu: boolean;
  /** Decode in tiles (generate's `tiled: true`). */
  tiledDecode: boolean;
  totalBytes: number;
}

/**
 * The smallest change under which `request` fits in `deviceBytes`: another offload mode alone
 * (fastest first), then also the text encoder on the CPU, then also a tiled decode, then both;
 * undefined when nothing fits (a smaller size or fewer frames is all that is left). A change the
 * request already has is not suggested, nor a mode that keeps more resident than `current` (the one
 * that ran out of memory): whatever the estimate says, that mode needs more.
 */
export function suggestFit(model: MemoryModel, request: MemoryRequest, deviceBytes: number, current: Offload = 'none'): FitSuggestion | undefined {
  const textOnDevice = request.textEncoderOnDevice !== false;
  const tiled = request.vaeTile !== undefined && request.vaeTile > 0;
  const changes = [
    { textEncoderOnCpu: false, tiledDecode: false },
    { textEncoderOnCpu: true, tiledDecode: false },
    { textEncoderOnCpu: false, tiledDecode: true },
    { textEncoderOnCpu: true, tiledDecode: true },
  ].filter((c) => (textOnDevice || !c.textEncoderOnCpu) && (!tiled || !c.tiledDecode));
  for (const change of changes) {
    const estimates = estimateMemory(model, {
      ...request,
      textEncoderOnDevice: textOnDevice && !change.textEncoderOnCpu,
      vaeTile: change.tiledDecode ? VAE_DEFAULT_TILE : request.vaeTile,
    });
    const offload = suggestOffload(estimates, deviceBytes, current);
    if (offload) return { offload, ...change, totalBytes: estimates[offload].totalBytes };
  }
  return undefined;
}

/** The options of a suggestFit() result, as ERR_WAN_OOM's advice words them. */
export function describeFit(fit: FitSuggestion, current: Offload, deviceBytes: number): string {
  const load: string[] = [];
  if (fit.offload !== current) load.push(`offload: '${fit.offload}'`);
  if (fit.textEncoderOnCpu) load.push("textEncoderDevice: 'cpu'");
  const parts: string[] = [];
  if (load.length) parts.push(`loading with { ${load.join(', ')} }`);
  if (fit.tiledDecode) parts.push('generating with tiled: true');
  const about = `(about ${formatBytes(fit.totalBytes)} of ${formatBytes(deviceBytes)})`;
  if (!parts.length) return `The estimate (about ${formatBytes(fit.totalBytes)} of ${formatBytes(deviceBytes)}) says it fits, so other memory was in use: free some, or use a smaller size or fewer frames.`;
  const text = parts.join(' and ');
  return `${text[0].toUpperCase()}${text.slice(1)} would fit ${about}.`;
}

export function formatBytes(n: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) {
    n /= 1024;
    i++;
  }
  return `${i === 0 ? n : n.toFixed(n >= 100 ? 0 : 1)} ${units[i]}`;
}
