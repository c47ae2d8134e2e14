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
  cudaDeviceCount: number;
  threads: number;
  devices: Array<{ type: 'cpu' | 'cuda'; name: string; index?: number; totalMemory?: number }>;
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
   *  'auto': tile only when the estimated untiled pass would not fit the device's free memory. */
  tiled?: boolean | 'auto';
  /** Tile size and overlap in pixels (decode output space). */
  tileSize?: number;
  tileOverlap?: number;
}

export interface NativeVae {
  /** video [B,3,F,H,W] in [-1,1], F = 4k+1 -> posterior mean, logvar (clamped) and normalized mean. */
  encode(video: TensorData, options?: VaeTilingOptions, token?: CancelToken, onProgress?: ProgressCallback): Promise<{ mean: TensorData; logvar: TensorData; normalized: TensorData }>;
  /** normalized latents [B,z,F',H',W'] -> de-normalized latents and float32 video [B,3,F,H,W] clamped to [-1,1]. */
  decode(latents: TensorData, options?: VaeTilingOptions, token?: CancelToken, onProgress?: ProgressCallback): Promise<{ denormalized: TensorData; video: TensorData }>;
  info(): { zDim: number; version: '2.1' | '2.2'; scaleFactorSpatial: number; scaleFactorTemporal: number; parameterCount: number; dtype: string; device: string };
  dispose(): void;
}

export interface SchedulerRunOptions {
  /** A scheduler_config.json; defaults of the Wan2.2 UniPC config when absent. */
  configPath?: string;
  sampler: 'unipc' | 'euler' | 'unipc-official';
  steps: number;
  /** Overrides the config's flow_shift. */
  shift?: number;
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
  /** torch.manual_seed(seed); torch.randn(shape, dtype=float32) on the CPU generator. */
  randn(seed: number, shape: number[]): TensorData;
  /** Test hook: a cancellable call of `steps` sleeps reporting progress; resolves to steps run. */
  _testLongCall(steps: number, msPerStep: number, token?: CancelToken, onProgress?: ProgressCallback): Promise<number>;
  /** Test hook: rejects the way the engine does for failure `kind`. */
  _testThrow(kind: 'c10' | 'bad_alloc' | 'oom' | 'bad_argument' | 'runtime'): Promise<void>;

  loadTransformer(dir: string, options?: LoadOptions, token?: CancelToken): Promise<NativeTransformer>;
  loadTextEncoder(dir: string, options?: LoadOptions, token?: CancelToken): Promise<NativeTextEncoder>;
  loadVae(dir: string, options?: LoadOptions, token?: CancelToken): Promise<NativeVae>;
  /** Runs the sampler over given model outputs (one per step): the scheduler parity entry point. */
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
