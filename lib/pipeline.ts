// WanPipeline: the public API. Validates options, applies the family defaults, tokenizes prompts,
// prepares the conditioning image, and runs the native pipeline one call at a time (calls queue in
// order), with progress events and AbortSignal cancellation.
import { EventEmitter } from 'node:events';
import { existsSync } from 'node:fs';
import path from 'node:path';

import type { CancelToken, NativeDecodeRequest, NativeGenerateRequest, NativeGenerateResult, NativePipeline, NativePipelineInfo, TensorData } from '../binding.js';
import { FAMILY_DEFAULTS, type FamilyDefaults } from './defaults.js';
import { badArgument, LATENTS_KEPT_HINT, WanError } from './errors.js';
import { fitToArea, imageSize, imageTensor } from './image.js';
import { native } from './native.js';
import { describeValue, finiteNumber, integer, isDevice, oneOf, rejectUnknown } from './options.js';
import { DEFAULT_NEGATIVE_PROMPT, Tokenizer } from './text.js';
import { describeFit, estimateMemory, formatBytes, suggestFit, VAE_DEFAULT_TILE, type MemoryRequest } from './memory.js';
import { describeModelFolder } from './model-folder.js';
import { runtimeInfo } from './runtime.js';
import type { DecodeOptions, Dtype, GenerateOptions, GenerationSettings, LoadOptions, ModelFamily, Offload, ProgressEvent } from './types.js';
import { Video } from './video.js';

const DECODE_KEYS = ['tiled', 'fps', 'returnFloat', 'signal', 'onProgress'] as const;
const LOAD_KEYS = ['device', 'dtype', 'offload', 'textEncoderDevice', 'vaeDtype', 'onProgress', 'signal'] as const;
const GENERATE_KEYS = [
  'prompt', 'negativePrompt', 'image', 'width', 'height', 'numFrames', 'steps', 'guidanceScale', 'guidanceScale2', 'shift',
  'sampler', 'seed', 'numVideosPerPrompt', 'latents', 'promptEmbeds', 'negativePromptEmbeds', 'output', 'tiled', 'signal',
  'onProgress', 'returnFloat',
] as const;
const DTYPES = ['float32', 'bfloat16', 'float16'] as const;

/** Connects an AbortSignal to a native CancelToken for the duration of one call. */
function cancelTokenFor(signal: AbortSignal | undefined) {
  const token = new (native().CancelToken)();
  if (!signal) return { token, release: () => {} };
  if (!(signal instanceof AbortSignal)) throw badArgument('signal', 'must be an AbortSignal');
  const onAbort = () => token.cancel();
  if (signal.aborted) token.cancel();
  else signal.addEventListener('abort', onAbort, { once: true });
  return { token, release: () => signal.removeEventListener('abort', onAbort) };
}

function abortedError(signal: AbortSignal): WanError {
  return new WanError('ERR_WAN_ABORTED', 'the operation was aborted', { cause: signal.reason });
}

type GenerateDetails = GenerationSettings;

/** A checked decode() call. */
interface PreparedDecode {
  request: NativeDecodeRequest;
  fps: number;
  returnFloat: boolean;
}

/** The load options the OOM advice needs, defaults applied. */
interface ResolvedLoadOptions {
  offload: Offload;
  textEncoderDevice: string;
  vaeDtype: Dtype;
}

export class WanPipeline extends EventEmitter {
  readonly dir: string;
  readonly family: ModelFamily;
  readonly defaults: FamilyDefaults;
  #native: NativePipeline | undefined;
  #info: NativePipelineInfo;
  #tokenizer: Tokenizer | WanError | undefined;  // the error: the tokenizer addon could not load
  #loadOptions: ResolvedLoadOptions;
  #queue: Promise<unknown> = Promise.resolve();
  #disposed = false;

  private constructor(dir: string, nativePipeline: NativePipeline, tokenizer: Tokenizer | WanError | undefined, loadOptions: ResolvedLoadOptions) {
    super();
    this.#loadOptions = loadOptions;
    this.dir = dir;
    this.#native = nativePipeline;
    this.#info = nativePipeline.info();
    this.family = this.#info.family;
    this.defaults = FAMILY_DEFAULTS[this.family];
    this.#tokenizer = tokenizer;
  }

  /** Loads a Wan2.2 Diffusers folder (model_index.json, scheduler/, text_encoder/, tokenizer/, transformer/, [transformer_2/], vae/). */
  static async load(dir: string, options: LoadOptions = {}): Promise<WanPipeline> {
    if (typeof dir !== 'string' || dir === '') throw badArgument('dir', 'must be the path of a model folder');
    // The OS would cut the path at a NUL and its error message with it.
    if (dir.includes('\0')) throw badArgument('dir', `${describeValue(dir)} contains a NUL character`, 'the path of a model folder');
    if (options === null || typeof options !== 'object') throw badArgument('options', 'must be an object');
    rejectUnknown(options, LOAD_KEYS, 'load');
    const device = options.device ?? 'cpu';
    if (!isDevice(device)) throw badArgument('device', `is ${describeValue(device)}`, "'cpu', 'cuda', 'cuda:N'");
    if (options.textEncoderDevice !== undefined && !isDevice(options.textEncoderDevice))
      throw badArgument('textEncoderDevice', `is ${describeValue(options.textEncoderDevice)}`, "'cpu', 'cuda', 'cuda:N'");
    const dtype = oneOf(options.dtype ?? (device === 'cpu' ? 'float32' : 'bfloat16'), 'dtype', DTYPES);
    const vaeDtype = oneOf(options.vaeDtype ?? 'float32', 'vaeDtype', DTYPES);
    const offload = oneOf(options.offload ?? 'none', 'offload', ['none', 'model', 'sequential'] as const);
    if (options.onProgress !== undefined && typeof options.onProgress !== 'function') throw badArgument('onProgress', 'must be a function');
    if (options.signal?.aborted) throw abortedError(options.signal);

    const resolved = path.resolve(dir);
    const tokenizerDir = path.join(resolved, 'tokenizer');
    // Without the tokenizer addon (no libsentencepiece at build time) the model still loads and runs
    // from promptEmbeds; a text prompt then gets that error. A bad spiece.model fails here.
    let tokenizer: Tokenizer | WanError | undefined;
    if (existsSync(tokenizerDir)) {
      try {
        tokenizer = await Tokenizer.load(tokenizerDir);
      } catch (err) {
        if (!(err instanceof WanError && err.code === 'ERR_WAN_NO_LIBTORCH')) throw err;
        tokenizer = err;
      }
    }
    const { token, release } = cancelTokenFor(options.signal);
    const onProgress = (e: ProgressEvent) => options.onProgress?.(e);
    const textEncoderDevice = options.textEncoderDevice ?? device;
    try {
      const nativePipeline = await native().loadPipeline(
        resolved,
        { device, dtype, textEncoderDevice, vaeDtype, offload },
        token,
        (e) => onProgress(e as ProgressEvent),
      );
      return new WanPipeline(resolved, nativePipeline, tokenizer, { offload, textEncoderDevice, vaeDtype });
    } finally {
      release();
    }
  }

  /**
   * Generates one video. For several (prompt lists, numVideosPerPrompt > 1) use generateBatch().
   * With `output: 'latents'` the video has no frames (numFrames 0) and carries `latents` only.
   */
  async generate(options: GenerateOptions): Promise<Video> {
    // Refused before any work: several videos would all be generated, then thrown away.
    const { count, option } = requestedVideos(options);
    if (count > 1) throw badArgument(option, `gives ${count} videos; use generateBatch() for several`);
    const videos = await this.generateBatch(options);
    return videos[0];
  }

  /** Generates one video per prompt and per numVideosPerPrompt, in prompt order (prompt 0's videos first). */
  generateBatch(options: GenerateOptions): Promise<Video[]> {
    // Checked and prepared at once, not when its turn comes: bad options fail without waiting for
    // the calls ahead. Its warnings are reported when it runs, among its own events.
    const warnings: string[] = [];
    const prepared = this.#prepare(options, warnings);
    return this.#enqueue(options?.signal, prepared, async () => {
      const { request, details, fps } = await prepared;
      return this.#generate(request, details, fps, warnings, options);
    });
  }

  /**
   * Runs `call` after the calls queued before it. Calls made before dispose() still run; calls after
   * it are refused at once. While it waits, an abort of `signal` or a failure of `prepared` (its
   * option checks) rejects it at once, and it is skipped when its turn comes.
   */
  #enqueue<T>(signal: unknown, prepared: Promise<unknown>, call: () => Promise<T>): Promise<T> {
    prepared.catch(() => {});  // reported through the returned promise
    if (this.#disposed) return Promise.reject(new WanError('ERR_WAN_DISPOSED', 'the pipeline was disposed; load it again'));
    if (signal !== undefined && !(signal instanceof AbortSignal)) return Promise.reject(badArgument('signal', 'must be an AbortSignal'));
    if (signal?.aborted) return Promise.reject(abortedError(signal));
    let started = false;
    const run = () => {
      started = true;
      return signal?.aborted ? Promise.reject(abortedError(signal)) : call();
    };
    const result = this.#queue.then(run, run);
    this.#queue = result.catch(() => {});
    return new Promise<T>((resolve, reject) => {
      const refuse = (err: unknown) => !started && reject(err);
      const onAbort = () => refuse(abortedError(signal as AbortSignal));
      signal?.addEventListener('abort', onAbort, { once: true });
      prepared.catch(refuse);
      result.then(resolve, reject).finally(() => signal?.removeEventListener('abort', onAbort));
    });
  }

  /**
   * Decodes final latents [B, C, F', H', W'] to videos, one per row: a Video's `latents` (e.g. from
   * `output: 'latents'`), or the `latents` of the error of a generation that failed after denoising
   * (its decode ran out of memory or was aborted), so that its work is not lost:
   * `pipe.decode(err.latents, { tiled: true })`. Queued with generate() calls.
   */
  decode(latents: TensorData, options: DecodeOptions = {}): Promise<Video[]> {
    const prepared = (async () => this.#prepareDecode(latents, options))();
    return this.#enqueue(options?.signal, prepared, async () => this.#decode(await prepared, options));
  }

  /** Frees the native models. Later calls reject with ERR_WAN_DISPOSED. Waits for queued calls. */
  async dispose(): Promise<void> {
    if (this.#disposed) return;
    this.#disposed = true;
    await this.#queue;
    this.#native?.dispose();
    this.#native = undefined;
  }

  /** What the native side reports about the loaded model. */
  info(): NativePipelineInfo {
    if (this.#disposed || !this.#native) throw new WanError('ERR_WAN_DISPOSED', 'the pipeline was disposed; load it again');
    return this.#native.info();
  }

  /**
   * What a failed generate or decode rejects with: ERR_WAN_OOM explained; and when the denoising had
   * ended (the error carries the final latents), a message that says how to finish the videos.
   */
  async #failure(err: unknown, size: VideoSize, tiled: NativeGenerateRequest['tiled']): Promise<unknown> {
    const failed = (err as WanError)?.code === 'ERR_WAN_OOM' ? await this.#explainOom(err as WanError, size, tiled) : err;
    const latents = (err as WanError)?.latents;
    if (latents && failed instanceof Error) {
      (failed as WanError).latents = latents;
      failed.message += LATENTS_KEPT_HINT;
    }
    return failed;
  }

  /** An ERR_WAN_OOM that also says what the request needs and what change of options would fit. */
  async #explainOom(err: WanError, details: VideoSize, tiled: NativeGenerateRequest['tiled']): Promise<WanError> {
    let advice = '';
    try {
      const info = this.#info;
      const { offload: mode, textEncoderDevice, vaeDtype } = this.#loadOptions;
      const model = (await describeModelFolder(this.dir)).memoryModel;
      const request: MemoryRequest = {
        width: details.width, height: details.height, numFrames: details.numFrames, batch: details.batch, dtype: info.dtype as Dtype, vaeDtype,
        textEncoderOnDevice: textEncoderDevice !== 'cpu',
        // 'auto' tiles whenever whole frames would not fit: it needs what a tiled decode needs.
        vaeTile: tiled === 'off' ? 0 : VAE_DEFAULT_TILE,
      };
      const smaller = details.batch > 1 ? 'fewer videos per call, a smaller size or fewer frames' : 'a smaller size or fewer frames';
      if (info.device === 'cpu') {
        // Everything lives in host memory there, the text encoder and both experts included.
        const need = formatBytes(estimateMemory(model, { ...request, textEncoderOnDevice: true }).none.totalBytes);
        advice = ` This request needs about ${need} of host memory; use ${smaller}.`;
      } else {
        const need = formatBytes(estimateMemory(model, request)[mode].totalBytes);
        const device = runtimeInfo().devices.find((d) => d.name === info.device || (d.type === 'cuda' && info.device === `cuda:${d.index}`));
        const fit = device?.totalMemory ? suggestFit(model, request, device.totalMemory, mode) : undefined;
        advice = ` With offload '${mode}' it needs about ${need}. ` +
          (fit && device?.totalMemory ? describeFit(fit, mode, device.totalMemory) : `Use ${smaller}.`);
      }
    } catch {
      // The estimate is advice only; the original error stands.
    }
    return new WanError('ERR_WAN_OOM', err.message + advice, { cause: err });
  }

  /** Delivers a progress event to the 'progress' listeners, then to the call's onProgress. */
  #emit(event: ProgressEvent, options: GenerateOptions | DecodeOptions): void {
    this.emit('progress', event);
    options.onProgress?.(event);
  }

  async #generate(request: NativeGenerateRequest, details: GenerateDetails, fps: number, warnings: string[], options: GenerateOptions): Promise<Video[]> {
    const native = this.#usable();
    const size = { ...details, batch: ((request.promptEmbeds ?? request.promptIds)?.shape[0] ?? 1) * (request.numVideosPerPrompt ?? 1) };
    const result = await this.#call(options, size, request.tiled, (token, progress) => {
      for (const message of warnings) progress({ stage: 'warning', step: 0, totalSteps: 0, elapsedMs: 0, message });
      return native.generate(request, token, progress);
    });
    return splitResult(result, fps, options.returnFloat === true, details);
  }

  #usable(): NativePipeline {
    if (!this.#native) throw new WanError('ERR_WAN_DISPOSED', 'the pipeline was disposed; load it again');
    return this.#native;
  }

  /**
   * A native call with the caller's signal as its cancel token, its progress events delivered
   * (#emit), and its failure explained (#failure). A progress listener that throws stops the call,
   * which then rejects with ERR_WAN_ABORTED caused by that error (with the latents, when the
   * denoising had ended): the error is neither lost nor thrown into the addon.
   */
  async #call<T extends { latents: TensorData }>(
    options: GenerateOptions | DecodeOptions, size: VideoSize, tiled: NativeGenerateRequest['tiled'],
    call: (token: CancelToken, progress: (e: unknown) => void) => Promise<T>,
  ): Promise<T> {
    if (options.signal?.aborted) throw abortedError(options.signal);
    const { token, release } = cancelTokenFor(options.signal);
    let listenerError: WanError | undefined;
    const progress = (e: unknown) => {
      if (listenerError) return;
      try {
        this.#emit(e as ProgressEvent, options);
      } catch (cause) {
        listenerError = new WanError('ERR_WAN_ABORTED', `a progress listener threw, so the call was stopped: ${describeThrown(cause)}`, { cause });
        token.cancel();
      }
    };
    try {
      const result = await call(token, progress);
      if (listenerError) {
        // It threw at the last event, after the work was done: the work is on the error.
        listenerError.latents = result.latents;
        throw listenerError;
      }
      return result;
    } catch (err) {
      if (listenerError && err !== listenerError) listenerError.latents ??= (err as WanError)?.latents;
      throw await this.#failure(listenerError ?? err, size, tiled);
    } finally {
      release();
    }
  }

  /** decode()'s checks, before it queues. */
  #prepareDecode(latents: TensorData, options: DecodeOptions): PreparedDecode {
    if (options === null || typeof options !== 'object') throw badArgument('options', 'must be an object');
    rejectUnknown(options, DECODE_KEYS, 'decode');
    const request: NativeDecodeRequest = { latents: checkTensor(latents, 'latents', 5), tiled: tiledMode(options.tiled) };
    const fps = options.fps === undefined ? this.defaults.fps : finiteNumber(options.fps, 'fps', 0, 1000, true);
    if (options.onProgress !== undefined && typeof options.onProgress !== 'function') throw badArgument('onProgress', 'must be a function');
    const returnFloat = optionalBoolean(options.returnFloat, 'returnFloat');
    request.returnFloat = returnFloat;
    return { request, fps, returnFloat };
  }

  async #decode({ request, fps, returnFloat }: PreparedDecode, options: DecodeOptions): Promise<Video[]> {
    const native = this.#usable();
    const [, , frames, height, width] = request.latents.shape;
    const size = {
      width: width * this.#info.scaleFactorSpatial,
      height: height * this.#info.scaleFactorSpatial,
      numFrames: (frames - 1) * this.#info.scaleFactorTemporal + 1,
      batch: request.latents.shape[0],
    };
    const result = await this.#call(options, size, request.tiled, (token, progress) => native.decode(request, token, progress));
    const videos: Video[] = [];
    for (let i = 0; i < result.latents.shape[0]; i++) {
      const video = framesVideo(result.frames, i, fps);
      video.latents = sample(result.latents, i);
      if (returnFloat && result.video) video.float = sample(result.video, i);
      videos.push(video);
    }
    return videos;
  }

  /** generate()'s checks and inputs (tokens, image), before it queues; `warnings` collects what it changed. */
  async #prepare(options: GenerateOptions, warnings: string[]) {
    if (options === null || typeof options !== 'object') throw badArgument('options', 'must be an object');
    rejectUnknown(options, GENERATE_KEYS, 'generate');
    const d = this.defaults;
    const isA14b = this.family !== 'ti2v-5b';
    if (options.onProgress !== undefined && typeof options.onProgress !== 'function') throw badArgument('onProgress', 'must be a function');
    const returnFloat = optionalBoolean(options.returnFloat, 'returnFloat');
    const sampler = oneOf(options.sampler ?? 'unipc', 'sampler', ['unipc', 'euler', 'unipc-official'] as const);
    const steps = integer(options.steps ?? d.steps, 'steps', 1, 1000);
    const guidanceScale = finiteNumber(options.guidanceScale ?? d.guidanceScale, 'guidanceScale', 0, 100);
    let guidanceScale2: number | undefined;
    if (options.guidanceScale2 !== undefined) {
      if (!isA14b) throw badArgument('guidanceScale2', 'is only for the two-expert A14B models');
      guidanceScale2 = finiteNumber(options.guidanceScale2, 'guidanceScale2', 0, 100);
    } else if (isA14b) {
      // The family default applies only when the caller keeps the default high-noise scale too;
      // otherwise it follows guidanceScale, as in diffusers.
      guidanceScale2 = options.guidanceScale === undefined ? d.guidanceScale2 : guidanceScale;
    }
    // As in diffusers, guidanceScale alone decides whether CFG runs at all, for both experts.
    if (guidanceScale <= 1 && options.guidanceScale2 !== undefined && options.guidanceScale2 > 1)
      warnings.push(`guidanceScale ${guidanceScale} <= 1 turns classifier-free guidance off for both experts; guidanceScale2 ${options.guidanceScale2} is not used`);
    const shift = finiteNumber(options.shift ?? d.shift, 'shift', 0, 1000, true);
    const seed = options.seed ?? Math.floor(Math.random() * 2 ** 31);
    integer(seed, 'seed', 0, Number.MAX_SAFE_INTEGER);
    const numVideosPerPrompt = integer(options.numVideosPerPrompt ?? 1, 'numVideosPerPrompt', 1, 64);
    const output = oneOf(options.output ?? 'frames', 'output', ['frames', 'latents'] as const);
    const tiled = tiledMode(options.tiled);

    // Image and size.
    const needsImage = this.family === 'i2v-a14b';
    if (needsImage && options.image === undefined) throw badArgument('image', 'is required by the I2V-A14B model');
    if (this.family === 't2v-a14b' && options.image !== undefined) throw badArgument('image', 'is not used by T2V-A14B', 'an I2V-A14B or TI2V-5B model');
    const maxSide = 8192;
    let width = options.width;
    let height = options.height;
    if (options.image !== undefined && (width === undefined || height === undefined)) {
      const size = await imageSize(options.image);
      const fitted = fitToArea(size.width, size.height, d.area, d.sizeMultiple);
      // A very elongated image gives a side the caller never passed; blame the image, not 'width'/'height'.
      if ((width === undefined && fitted.width > maxSide) || (height === undefined && fitted.height > maxSide)) {
        throw badArgument('image', `has aspect ${size.width}x${size.height}, which at this model's area gives ${fitted.width}x${fitted.height}, beyond the ${maxSide} limit`, 'pass width and height explicitly');
      }
      width ??= fitted.width;
      height ??= fitted.height;
    }
    width = integer(width ?? d.width, 'width', 1, maxSide);
    height = integer(height ?? d.height, 'height', 1, maxSide);
    const multiple = this.#info.scaleFactorSpatial * this.#info.patchSize;
    const w = Math.floor(width / multiple) * multiple;
    const h = Math.floor(height / multiple) * multiple;
    if (w < multiple || h < multiple) throw badArgument(width < multiple ? 'width' : 'height', `is below ${multiple}`, `a multiple of ${multiple}`);
    if (w !== width || h !== height) {
      warnings.push(`width and height must be multiples of ${multiple}; using ${w}x${h} instead of ${width}x${height}`);
      width = w;
      height = h;
    }
    let numFrames = integer(options.numFrames ?? d.numFrames, 'numFrames', 1, 10_000);
    const ft = this.#info.scaleFactorTemporal;
    if (numFrames % ft !== 1) {
      const rounded = Math.max(Math.floor(numFrames / ft) * ft + 1, 1);
      warnings.push(`numFrames - 1 must be divisible by ${ft}; using ${rounded} instead of ${numFrames}`);
      numFrames = rounded;
    }

    // Text conditioning: token ids (encoded natively, cached) or caller-given embeddings.
    const request: NativeGenerateRequest = {
      width, height, numFrames, steps, guidanceScale, guidanceScale2, shift, sampler, seed, numVideosPerPrompt,
      outputLatents: output === 'latents', tiled, returnFloat,
    };
    const cfg = guidanceScale > 1;
    if (options.prompt !== undefined && options.promptEmbeds !== undefined) throw badArgument('prompt', 'and promptEmbeds are exclusive; pass one');
    if (options.negativePrompt !== undefined && options.negativePromptEmbeds !== undefined) throw badArgument('negativePrompt', 'and negativePromptEmbeds are exclusive; pass one');
    let batch: number;
    if (options.promptEmbeds !== undefined) {
      request.promptEmbeds = checkTensor(options.promptEmbeds, 'promptEmbeds', 3);
      batch = options.promptEmbeds.shape[0];
    } else {
      const prompts = promptList(options.prompt, 'prompt');
      batch = prompts.length;
      const ids = this.#tokenize(prompts);
      request.promptIds = ids.inputIds;
      request.promptMask = ids.attentionMask;
    }
    // Checked even when CFG is off (and they go unused): a wrong value is a caller's mistake either way.
    const negativeEmbeds = options.negativePromptEmbeds === undefined ? undefined : checkTensor(options.negativePromptEmbeds, 'negativePromptEmbeds', 3);
    if (options.negativePrompt !== undefined) promptList(options.negativePrompt, 'negativePrompt');
    if (cfg) {
      if (negativeEmbeds !== undefined) {
        request.negativePromptEmbeds = negativeEmbeds;
      } else {
        let negatives = promptList(options.negativePrompt ?? DEFAULT_NEGATIVE_PROMPT, 'negativePrompt');
        if (negatives.length === 1 && batch > 1) negatives = Array(batch).fill(negatives[0]);
        if (negatives.length !== batch) throw badArgument('negativePrompt', `has ${negatives.length} entries but there are ${batch} prompts`);
        const ids = this.#tokenize(negatives);
        request.negativeIds = ids.inputIds;
        request.negativeMask = ids.attentionMask;
      }
    }
    if (options.latents !== undefined) request.latents = checkTensor(options.latents, 'latents', 5);
    if (options.image !== undefined) request.image = await imageTensor(options.image, width, height);

    const details: GenerateDetails = { width, height, numFrames, steps, guidanceScale, guidanceScale2, shift, sampler, seed };
    return { request, details, fps: d.fps };
  }

  #tokenize(prompts: string[]) {
    if (this.#tokenizer instanceof WanError) throw new WanError(this.#tokenizer.code, this.#tokenizer.message, { cause: this.#tokenizer.cause });
    if (!this.#tokenizer) {
      throw new WanError(
        'ERR_WAN_BAD_CHECKPOINT',
        `${this.dir} has no tokenizer/ folder (spiece.model), so text prompts cannot be encoded; add the tokenizer of the Diffusers repo or pass promptEmbeds`,
      );
    }
    return this.#tokenizer.tokenize(prompts, 512); // it cleans them (cleanPrompt)
  }
}

/** The size of the videos a request makes (what the memory estimate needs). */
type VideoSize = Pick<GenerationSettings, 'width' | 'height' | 'numFrames'> & { batch: number };

function optionalBoolean(value: unknown, name: string): boolean {
  if (value !== undefined && typeof value !== 'boolean') throw badArgument(name, `is ${describeValue(value)}`, 'true or false');
  return value === true;
}

/** What a thrown value says, for a message. */
function describeThrown(value: unknown): string {
  return value instanceof Error ? value.message : describeValue(value);
}

/** The `tiled` option as the addon takes it. */
function tiledMode(value: unknown): NonNullable<NativeGenerateRequest['tiled']> {
  const option = value ?? 'auto';
  if (option !== true && option !== false && option !== 'auto') throw badArgument('tiled', `is ${describeValue(option)}`, "true, false, 'auto'");
  return option === 'auto' ? 'auto' : option ? 'on' : 'off';
}

/** Sample `i` of a [B, ...] tensor as [1, ...]. */
function sample(t: TensorData, i: number): TensorData {
  const per = t.shape.slice(1).reduce((a, b) => a * b, 1);
  // A view, not a copy: a 720p video is over a gigabyte of float32, and the result is ours alone.
  const data = (t.data as Float32Array).subarray(i * per, (i + 1) * per);
  return { dtype: t.dtype, shape: [1, ...t.shape.slice(1)], data };
}

/** Video `i` of the native uint8 frames [B, F, H, W, 3] (a view, no copy); an empty video when there are none (output 'latents'). */
function framesVideo(frames: TensorData | undefined, i: number, fps: number): Video {
  return frames ? Video.fromFrames(frames, fps, i) : Video.empty(fps);
}

function splitResult(result: NativeGenerateResult, fps: number, returnFloat: boolean, details: GenerateDetails): Video[] {
  const count = result.latents.shape[0];
  const videos: Video[] = [];
  for (let i = 0; i < count; i++) {
    const video = framesVideo(result.frames, i, fps);
    video.latents = sample(result.latents, i);
    if (returnFloat && result.video) video.float = sample(result.video, i);
    video.settings = result.attentionBackend ? { ...details, attentionBackend: result.attentionBackend } : details;
    videos.push(video);
  }
  return videos;
}

/** The number of videos a request asks for (prompts or embedding rows x numVideosPerPrompt), and the option that makes it several. */
function requestedVideos(options: GenerateOptions): { count: number; option: 'prompt' | 'promptEmbeds' | 'numVideosPerPrompt' } {
  if (options === null || typeof options !== 'object') return { count: 1, option: 'prompt' };  // #prepare says what is wrong
  const perPrompt = typeof options.numVideosPerPrompt === 'number' ? options.numVideosPerPrompt : 1;
  const embedRows = options.promptEmbeds?.shape?.[0];
  const prompts = Array.isArray(options.prompt) ? options.prompt.length : typeof embedRows === 'number' ? embedRows : 1;
  const option = perPrompt > 1 ? 'numVideosPerPrompt' : options.promptEmbeds !== undefined ? 'promptEmbeds' : 'prompt';
  return { count: prompts * perPrompt, option };
}

// An empty prompt is legal, as for the reference (it encodes EOS only).
function promptList(value: unknown, name: string): string[] {
  const list = typeof value === 'string' ? [value] : value;
  if (!Array.isArray(list) || list.length === 0) throw badArgument(name, 'must be a string or a non-empty array of strings');
  // An index loop, not .some(): .some() skips the holes of a sparse array like [, 'a'].
  for (let i = 0; i < list.length; i++) {
    if (typeof list[i] !== 'string') {
      const entry = i in list ? `is ${describeValue(list[i])}` : 'is missing (a hole in a sparse array)';
      throw badArgument(name, `entry ${i} ${entry}`, 'a string or a non-empty array of strings');
    }
  }
  return list as string[];
}

function checkTensor(t: TensorData, name: string, dims: number): TensorData {
  if (!t || typeof t !== 'object' || !Array.isArray(t.shape) || t.shape.length !== dims || !(t.data instanceof Float32Array)) {
    throw badArgument(name, `must be a float32 tensor { dtype, shape, data } with ${dims} dimensions`);
  }
  // An index loop, not .every()/.reduce(): those skip the holes of a sparse shape.
  let needed = 1;
  for (let i = 0; i < dims; i++) {
    const n: unknown = t.shape[i];
    if (typeof n !== 'number' || !Number.isInteger(n) || n < 0) throw badArgument(name, `has shape ${describeValue(t.shape)}`, 'non-negative integer sizes');
    needed *= n;
  }
  if (t.data.length !== needed) throw badArgument(name, `has ${t.data.length} values but its shape [${t.shape}] needs ${needed}`);
  // The addon cannot read a SharedArrayBuffer; a private copy also keeps other threads from changing it mid-run.
  if (t.data.buffer instanceof SharedArrayBuffer) return { ...t, data: new Float32Array(t.data) };
  return t;
}
