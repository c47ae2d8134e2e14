// The typed surface of the native addon (native/addon), nothing more. lib/ wraps it.

export type TensorDtype = 'float32' | 'float64' | 'int64' | 'int32' | 'uint8' | 'bool';

/** A tensor crossing the JS boundary (copied both ways). bf16/f16 results arrive as float32. */
export interface TensorData {
  dtype: TensorDtype;
  shape: number[];
  data: Float32Array | Float64Array | BigInt64Array | Int32Array | Uint8Array;
}

export interface NativeProgressEvent {
  stage: string;
  step: number;
  totalSteps: number;
  expert?: string;
  timestep?: number;
  elapsedMs: number;
  etaMs?: number;
  message?: string;
}

export type ProgressCallback = (event: NativeProgressEvent) => void;

export declare class CancelToken {
  constructor();
  cancel(): void;
  readonly cancelled: boolean;
}

export interface NativeRuntimeInfo {
  libtorchVersion: string;
  flavour: 'cpu' | 'cuda';
  cudaAvailable: boolean;
  /** Why CUDA cannot be used, when it cannot: a CPU build says so; a CUDA build that sees no GPU gives the CUDA runtime's reason. */
  cudaUnavailableReason?: string;
  /** The CUDA build's fused kernels run where they apply (false in a CPU build, and with WAN_FUSED_KERNELS=0). */
  fusedKernels: boolean;
  cudaDeviceCount: number;
  threads: number;
  /** cpu first, then each visible CUDA device; `model`/`totalMemory`/`computeCapability` of GPUs come from the CUDA runtime. */
  devices: Array<{ type: 'cpu' | 'cuda'; name: string; index?: number; model?: string; totalMemory?: number; computeCapability?: string }>;
}

export type ModelConfigKind = 'transformer' | 'text_encoder' | 'vae' | 'scheduler' | 'model_index';

/** The typed configs of native/core/model_config.h, as plain objects; `file` is the file read. */
export interface NativeTransformerConfig {
  file: string; inChannels: number; outChannels: number; numHeads: number; headDim: number; numLayers: number;
  ffnDim: number; freqDim: number; textDim: number; ropeMaxSeqLen: number; patchSize: [number, number, number];
  eps: number; crossAttnNorm: boolean; qkNorm: string; dim: number;
}
export interface NativeTextEncoderConfig {
  file: string; dModel: number; dKv: number; dFf: number; numLayers: number; numHeads: number; vocabSize: number;
  relativeAttentionNumBuckets: number; relativeAttentionMaxDistance: number; eps: number; feedForwardProj: string;
}
export interface NativeVaeConfig {
  file: string; baseDim: number; decoderBaseDim: number; zDim: number; inChannels: number; outChannels: number;
  numResBlocks: number; patchSize: number; scaleFactorSpatial: number; scaleFactorTemporal: number; dimMult: number[];
  temporalDownsample: boolean[]; attnScales: number[]; isResidual: boolean; latentsMean: number[]; latentsStd: number[];
}
export interface NativeSchedulerConfig {
  file: string; className: string; numTrainTimesteps: number; solverOrder: number; stepsOffset: number; predictionType: string;
  solverType: string; finalSigmasType: string; timestepSpacing: string; predictX0: boolean; lowerOrderFinal: boolean;
  useFlowSigmas: boolean; thresholding: boolean; useKarrasSigmas: boolean; useExponentialSigmas: boolean;
  useBetaSigmas: boolean; useDynamicShifting: boolean; flowShift: number; disableCorrector: number[];
}
export interface NativeModelIndex {
  file: string; className: string; boundaryRatio?: number; expandTimesteps: boolean; hasTransformer2: boolean; hasTokenizer: boolean;
}
export interface ModelConfigByKind {
  transformer: NativeTransformerConfig;
  text_encoder: NativeTextEncoderConfig;
  vae: NativeVaeConfig;
  scheduler: NativeSchedulerConfig;
  model_index: NativeModelIndex;
}

export interface LoadOptions {
  /** 'cpu' | 'cuda' | 'cuda:N' (default 'cpu'). */
  device?: string;
  /** 'float32' | 'bfloat16' | 'float16' (default 'float32'). */
  dtype?: string;
}

export interface NativeTransformer {
  /** One forward: timestep is int64/float32 [B] (or a scalar [1]) or per-token [B, seq]. */
  forward(
    inputs: { hiddenStates: TensorData; timestep: TensorData; encoderHiddenStates: TensorData },
    options?: { debug?: boolean },
    token?: CancelToken,
  ): Promise<{ output: TensorData; debug?: Record<string, TensorData> }>;
  info(): { dim: number; numLayers: number; numHeads: number; inChannels: number; outChannels: number; parameterCount: number; dtype: string; device: string };
  dispose(): void;
}

export interface NativeTextEncoder {
  /** ids/mask int64 [B, L]. promptEmbeds = lastHiddenState with rows at and past each real length set to 0. */
  encode(inputIds: TensorData, attentionMask: TensorData, token?: CancelToken): Promise<{ lastHiddenState: TensorData; promptEmbeds: TensorData }>;
  info(): { dModel: number; numLayers: number; parameterCount: number; dtype: string; device: string };
  dispose(): void;
}

export interface VaeTilingOptions {
  /** true: tile (when the frame is larger than one tile); false (default: tiling changes results slightly): never;
   *  'auto': tile only when the estimated untiled pass would not fit the device's free memory
   *  (on the CPU: would need more than 4 GiB beyond the weights). */
  tiled?: boolean | 'auto';
  /** Tile size and overlap in pixels (decode output space). */
  tileSize?: number;
  tileOverlap?: number;
}

export interface NativeVae {
  /** video [B,3,F,H,W] in [-1,1], F = 4k+1 -> posterior mean, logvar (clamped) and normalized mean. */
  encode(video: TensorData, options?: VaeTilingOptions, token?: CancelToken, onProgress?: ProgressCallback): Promise<{ mean: TensorData; logvar: TensorData; normalized: TensorData }>;
  /** normalized latents [B,z,F',H',W'] -> de-normalized latents and float32 video [B,3,F,H,W] clamped to [-1,1]. */
  decode(latents: TensorData, options?: VaeTilingOptions & { output?: 'video' }, token?: CancelToken, onProgress?: ProgressCallback): Promise<{ denormalized: TensorData; video: TensorData }>;
  /** output 'frames': uint8 frames [B,F,H,W,3] RGB instead of the float video, made on the worker thread
   *  as NativeDecodeResult's `frames` are. */
  decode(latents: TensorData, options: VaeTilingOptions & { output: 'frames' }, token?: CancelToken, onProgress?: ProgressCallback): Promise<{ denormalized: TensorData; frames: TensorData }>;
  info(): { zDim: number; version: '2.1' | '2.2'; scaleFactorSpatial: number; scaleFactorTemporal: number; parameterCount: number; dtype: string; device: string };
  dispose(): void;
}

export interface SchedulerRunOptions {
  /** A scheduler_config.json; defaults of the Wan2.2 UniPC config when absent (flow_shift 1.0 there). */
  configPath?: string;
  /** 'unipc': diffusers UniPCMultistepScheduler; 'unipc-official': the same update on the official Wan2.2 sigma grid; 'euler': flow-matching Euler. */
  sampler: 'unipc' | 'euler' | 'unipc-official';
  /** Integer 1..10000. */
  steps: number;
  /** Overrides the config's flow_shift (> 0). */
  shift?: number;
}

export interface NativePipelineOptions {
  device?: string;
  dtype?: string;
  textEncoderDevice?: string;
  vaeDtype?: string;
  offload?: 'none' | 'model' | 'sequential';
}

export interface NativeGenerateRequest {
  /** int64 [B, 512] token ids and masks to encode (or the embeddings below). */
  promptIds?: TensorData;
  promptMask?: TensorData;
  negativeIds?: TensorData;
  negativeMask?: TensorData;
  promptEmbeds?: TensorData;
  negativePromptEmbeds?: TensorData;
  /** I2V: [1, 3, height, width] float32 in [-1, 1]. */
  image?: TensorData;
  latents?: TensorData;
  width: number;
  height: number;
  numFrames: number;
  steps: number;
  guidanceScale: number;
  guidanceScale2?: number;
  shift?: number;
  sampler?: 'unipc' | 'euler' | 'unipc-official';
  seed?: number;
  numVideosPerPrompt?: number;
  outputLatents?: boolean;
  /** Also return the float `video` (4x the bytes of `frames`). */
  returnFloat?: boolean;
  /** Keep per-step latents and model timesteps (parity runs). */
  recordSteps?: boolean;
  tiled?: 'on' | 'off' | 'auto';
}

export interface NativeDecodeRequest {
  /** Final latents [B, z, F', H', W'] float32 (a result's `latents`, or a failed generation's error's). */
  latents: TensorData;
  tiled?: 'on' | 'off' | 'auto';
  /** Also return the float `video` (4x the bytes of `frames`). */
  returnFloat?: boolean;
}

/** `frames`: uint8 [B, F, H, W, 3] RGB, made on the worker thread from the decoded video exactly as
 *  lib/video.ts floatToUint8 does (float32 x/2+0.5, NaN -> 0, clamp to [0, 1], *255, round half to even). */
export interface NativeDecodeResult {
  frames: TensorData;
  /** [B, 3, F, H, W] float32 in [-1, 1]; only with returnFloat. */
  video?: TensorData;
  /** The latents decoded (float32). */
  latents: TensorData;
  decoderInput: TensorData;
}

export interface NativeGenerateResult {
  /** uint8 [B, F, H, W, 3] RGB, as NativeDecodeResult's (absent when outputLatents). */
  frames?: TensorData;
  /** [B, 3, F, H, W] float32 in [-1, 1]; only with returnFloat (and not when outputLatents). */
  video?: TensorData;
  latents: TensorData;
  decoderInput?: TensorData;
  promptEmbeds: TensorData;
  negativePromptEmbeds?: TensorData;
  timesteps: TensorData;
  sigmas: TensorData;
  expertPerStep: TensorData;
  /** The SDPA backend libtorch chose for the DiT's self-attention ('flash_attention', 'cudnn_attention',
   *  'efficient_attention', 'math'; 'chunked_fallback' on libtorch 1.x). Absent when no denoising step ran. */
  attentionBackend?: string;
  latentsPerStep?: TensorData;
  modelTimestepPerStep?: TensorData;
  condition?: TensorData;
}

export interface NativePipelineInfo {
  family: 't2v-a14b' | 'i2v-a14b' | 'ti2v-5b';
  className: string;
  hasTransformer2: boolean;
  expandTimesteps: boolean;
  boundaryRatio?: number;
  numTrainTimesteps: number;
  flowShift: number;
  zDim: number;
  scaleFactorSpatial: number;
  scaleFactorTemporal: number;
  patchSize: number;
  textDim: number;
  device: string;
  dtype: string;
  /** Entries of the prompt-embedding cache (at most 4; one per encoded prompt tensor, a batch is one). */
  cachedPrompts: number;
  /** Prompts the text encoder has encoded since the load (each negative prompt and batch row counts;
   *  prompts served from the cache do not). */
  encodedPrompts: number;
  offload: 'none' | 'model' | 'sequential';
  /** DiT and VAE weight bytes that stay on `device` between generations ('model': 0; host copies not counted). */
  residentWeightBytes: number;
}

export interface NativePipeline {
  /** Rejects with a coded Error; when it failed after the denoise loop (in the decode), the error
   *  also has `latents`, the final latents [B, z, F', H', W'], for decode(). */
  generate(request: NativeGenerateRequest, token?: CancelToken, onProgress?: ProgressCallback): Promise<NativeGenerateResult>;
  /** The decode step alone: final latents to video (same tiling rule and progress events). A failure
   *  rejects with an error that carries the `latents` back. */
  decode(request: NativeDecodeRequest, token?: CancelToken, onProgress?: ProgressCallback): Promise<NativeDecodeResult>;
  info(): NativePipelineInfo;
  clearPromptCache(): void;
  dispose(): void;
}

export interface NativeBinding {
  CancelToken: typeof CancelToken;
  runtimeInfo(): NativeRuntimeInfo;
  readSafetensors(path: string): Promise<{ metadata: Record<string, string>; tensors: Record<string, TensorData> }>;
  /** Header-only listing of a safetensors file, a sharded folder (*.safetensors.index.json) or a folder of files. */
  describeTensors(path: string): Promise<{
    source: string;
    totalBytes: number;
    tensors: Array<{ name: string; dtype: string; shape: number[]; file: string }>;
  }>;
  /**
   * Reads and validates a config (synchronous): a component folder (its config.json, scheduler_config.json
   * or model_index.json by kind) or the file itself. Throws ERR_WAN_BAD_CHECKPOINT naming file and field.
   */
  readModelConfig<K extends ModelConfigKind>(path: string, kind: K): ModelConfigByKind[K];
  /** TF32 in float32 cuBLAS matmuls and cuDNN convolutions (Ampere and later), process-wide. Off for parity runs;
   *  never called, libtorch's defaults hold (cuBLAS off, cuDNN on). No effect on the CPU. */
  setAllowTF32(allow: boolean): void;
  /** torch.manual_seed(seed); torch.randn(shape, dtype=float32) on the CPU generator. */
  randn(seed: number, shape: number[]): TensorData;
  /** Test hook: a cancellable call of `steps` sleeps reporting progress; resolves to steps run. */
  _testLongCall(steps: number, msPerStep: number, token?: CancelToken, onProgress?: ProgressCallback): Promise<number>;
  /** Test hook: rejects the way the engine does for failure `kind`. */
  _testThrow(kind: 'c10' | 'bad_alloc' | 'oom' | 'bad_argument' | 'runtime' | 'result_oom'): Promise<void>;
  /** Test hook: attention of q [B,H,Sq,D], k/v [B,H,Sk,D] by the chunked fallback (blocks of queryChunk queries), by the fallback in one block, and by the attention() entry point (SDPA on libtorch >= 2). */
  _testAttention(q: TensorData, k: TensorData, v: TensorData, queryChunk: number): { chunked: TensorData; unchunked: TensorData; dispatched: TensorData };
  /** Test hook: the order libtorch tries its SDPA backends in ([] where it cannot be ordered, libtorch < 2.6), after
   *  setting `preferred` (a comma list, '' = libtorch's own) and, with `libtorchOrder`, after libtorch replaced its
   *  list itself (as a CUDA libtorch's first SDPA call does) and ours was put back. */
  _testAttentionOrder(preferred?: string, libtorchOrder?: string): string[];
  /** Test hook: the device/dtype option parsing of every loader (throws ERR_WAN_BAD_ARGUMENT / ERR_WAN_NO_CUDA). */
  _testParseDevice(device: string, dtype?: string): { device: string; dtype: string };
  /** Test hook: the pipeline's video -> frames conversion: [B, 3, F, H, W] float -> uint8 [B, F, H, W, 3], run on `device` (default 'cpu'). */
  _testToFrames(video: TensorData, device?: string): TensorData;

  loadTransformer(dir: string, options?: LoadOptions, token?: CancelToken): Promise<NativeTransformer>;
  loadTextEncoder(dir: string, options?: LoadOptions, token?: CancelToken): Promise<NativeTextEncoder>;
  loadVae(dir: string, options?: LoadOptions, token?: CancelToken): Promise<NativeVae>;
  loadPipeline(dir: string, options?: NativePipelineOptions, token?: CancelToken, onProgress?: ProgressCallback): Promise<NativePipeline>;
  /** Runs the sampler over given model outputs [steps, ...sample.shape] (one per step): the scheduler parity entry point.
   *  sample float32 or float64 (computed in that precision); prevSamples [steps, ...sample.shape]. */
  runScheduler(options: SchedulerRunOptions, sample: TensorData, modelOutputs: TensorData): Promise<{ timesteps: TensorData; sigmas: TensorData; prevSamples: TensorData }>;
}

export interface NativeTokenizer {
  /** SentencePiece ids of already-cleaned text, without EOS, padding or truncation. */
  encode(text: string): number[];
  vocabSize(): number;
}

export interface NativeTokenizerBinding {
  /** Loads a SentencePiece model file (spiece.model). Throws ERR_WAN_BAD_CHECKPOINT when missing or corrupt. */
  loadSentencePiece(path: string): NativeTokenizer;
}
