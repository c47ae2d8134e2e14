import type { TensorData } from '../binding.js';

/** Stable error codes of wan-video. Every failure a caller can cause carries one in `error.code`. */
export type WanErrorCode =
  | 'ERR_WAN_NO_LIBTORCH'
  | 'ERR_WAN_NO_CUDA'
  | 'ERR_WAN_NO_FFMPEG'
  | 'ERR_WAN_BAD_CHECKPOINT'
  | 'ERR_WAN_BAD_ARGUMENT'
  | 'ERR_WAN_OOM'
  | 'ERR_WAN_ABORTED'
  | 'ERR_WAN_BUSY'
  | 'ERR_WAN_DISPOSED'
  | 'ERR_WAN_INTERNAL';

export class WanError extends Error {
  readonly code: WanErrorCode;
  /**
   * Set when a generation failed after its denoising loop (the decode ran out of memory, or was
   * aborted): the final latents [B, C, F', H', W'], so that `pipeline.decode(err.latents)` can
   * finish the videos instead of the work being lost. (Errors from the native addon carry it too.)
   */
  latents?: TensorData;
  constructor(code: WanErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'WanError';
    this.code = code;
  }
}

/** What the message of an error with `latents` adds (the command line says its own instead). */
export const LATENTS_KEPT_HINT =
  " The denoised latents are kept on error.latents: pipeline.decode(error.latents, { tiled }) finishes the videos (the generation's tiled option gives the same frames; tiled: true needs the least memory).";

/** A WanError for an invalid option, naming it and what is allowed. */
export function badArgument(option: string, problem: string, allowed?: string): WanError {
  return new WanError('ERR_WAN_BAD_ARGUMENT', `option '${option}' ${problem}${allowed ? `; allowed: ${allowed}` : ''}`);
}
