// wan-video: Wan2.2 video generation from Node.js (see README.md).
export { WanPipeline } from './pipeline.js';
export { Video, type SaveOptions, type VideoFormat, type VideoQuality } from './video.js';
export { WanError, type WanErrorCode } from './errors.js';
export { runtimeInfo, type RuntimeInfo } from './runtime.js';
export { runParity, type ParityCheck, type ParityReport } from './parity.js';
export { cleanPrompt, DEFAULT_NEGATIVE_PROMPT, Tokenizer } from './text.js';
export { describeModelFolder, detectFamily } from './model-folder.js';
export { estimateMemory } from './memory.js';
export { FAMILY_DEFAULTS } from './defaults.js';
export type {
  DecodeOptions, Device, Dtype, GenerateOptions, GenerationSettings, ImageInput, LoadOptions, ModelFamily, Offload, ProgressEvent, Sampler, Stage,
} from './types.js';
export type { TensorData } from '../binding.js';
