// The public option and event types of wan-video (see README for the defaults per model family).

export type Device = 'cpu' | 'cuda' | `cuda:${number}`;
export type Dtype = 'float32' | 'bfloat16' | 'float16';
export type Offload = 'none' | 'model' | 'sequential';
export type Sampler = 'unipc' | 'euler' | 'unipc-official';
export type ModelFamily = 't2v-a14b' | 'i2v-a14b' | 'ti2v-5b';

export interface LoadOptions {
  /** Where the DiT (and by default everything else) runs. Default 'cpu'. */
  device?: Device;
  /** Weight/compute dtype of DiT and text encoder. Default 'bfloat16' on CUDA, 'float32' on the CPU. */
  dtype?: Dtype;
  /** GPU memory mode. Default 'none' (everything resident); 'model': one DiT expert on the GPU at a time;
   *  'sequential': DiT blocks streamed from host memory (see README, memory modes). */
  offload?: Offload;
  /** Run the UMT5 encoder elsewhere (the official `--t5_cpu`). Default: `device`. */
  textEncoderDevice?: Device;
  /** VAE dtype. Default 'float32' (the reference recommends it for quality). */
  vaeDtype?: Dtype;
  onProgress?: (event: ProgressEvent) => void;
  signal?: AbortSignal;
}

export type ImageInput = string | Buffer | { data: Uint8Array | Uint8ClampedArray; width: number; height: number; channels?: 3 | 4 };

export interface GenerateOptions {
  prompt?: string | string[];
  negativePrompt?: string | string[];
  /** Image-to-video conditioning (I2V-A14B, TI2V-5B): a file path, PNG/JPEG bytes or raw RGB(A). */
  image?: ImageInput;
  width?: number;
  height?: number;
  numFrames?: number;
  steps?: number;
  /**
   * CFG scale (A14B: of the high-noise expert). At 1 or below, guidance is off for every expert (no
   * unconditional pass; guidanceScale2 is then unused, with a warning event), as in diffusers.
   */
  guidanceScale?: number;
  /**
   * A14B: CFG scale of the low-noise expert. Default: the family's (T2V 3.0, I2V 3.5) when
   * guidanceScale is left out too, else guidanceScale (diffusers' rule).
   */
  guidanceScale2?: number;
  /** Flow shift of the sampler (default per family). */
  shift?: number;
  sampler?: Sampler;
  seed?: number;
  /** Videos per prompt, 1..64 (generateBatch(); prompts x numVideosPerPrompt is at most 64 per call). */
  numVideosPerPrompt?: number;
  /** Caller-given initial noise [B, C, F', H', W'] float32 (then `seed` is ignored). */
  latents?: import('../binding.js').TensorData;
  promptEmbeds?: import('../binding.js').TensorData;
  negativePromptEmbeds?: import('../binding.js').TensorData;
  /** 'frames' (default) decodes to video; 'latents' stops after denoising. */
  output?: 'frames' | 'latents';
  /** VAE tiling for decode: 'auto' (default) tiles only when the untiled decode would not fit. */
  tiled?: boolean | 'auto';
  /** Also return the decoded float video (`video.float`, [1, 3, F, H, W] in [-1, 1]). */
  returnFloat?: boolean;
  signal?: AbortSignal;
  onProgress?: (event: ProgressEvent) => void;
}

/** Options of WanPipeline.decode(). */
export interface DecodeOptions {
  /** VAE tiling: 'auto' (default) tiles only when the untiled decode would not fit. */
  tiled?: boolean | 'auto';
  /** Frames per second of the videos (default: the model family's). */
  fps?: number;
  /** Also return the decoded float video (`video.float`). */
  returnFloat?: boolean;
  signal?: AbortSignal;
  onProgress?: (event: ProgressEvent) => void;
}

/** What a progress event reports: loading, the prompts' encode, the image's VAE encode (image to video), the denoising steps, the VAE decode, the end, or a warning. */
export type Stage = 'load' | 'encode-text' | 'encode-image' | 'denoise' | 'decode' | 'done' | 'warning';

export interface ProgressEvent {
  stage: Stage;
  step: number;
  totalSteps: number;
  /** denoise: 'high-noise' | 'low-noise' (A14B) or 'transformer' (TI2V-5B). */
  expert?: string;
  /** denoise: the scheduler timestep of this step. */
  timestep?: number;
  elapsedMs: number;
  etaMs?: number;
  /** warning: what was changed (e.g. a rounded size). */
  message?: string;
}

/** The settings a generate() call used after defaults and rounding. */
export interface GenerationSettings {
  width: number;
  height: number;
  numFrames: number;
  steps: number;
  guidanceScale: number;
  guidanceScale2?: number;
  shift: number;
  sampler: string;
  seed: number;
  /** The attention kernel the DiT ran (libtorch's SDPA backend: 'flash_attention', 'cudnn_attention',
   *  'efficient_attention', 'math'; 'chunked_fallback' on libtorch 1.x). Set when a denoising step ran. */
  attentionBackend?: string;
}
