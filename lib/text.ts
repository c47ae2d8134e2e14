// Prompt text -> token ids, as the reference Wan pipelines prepare it for the UMT5 encoder:
// clean the text (HTML-unescape twice, collapse whitespace), SentencePiece-encode it, append EOS,
// truncate to the text length keeping EOS last, pad with the pad id.
import path from 'node:path';

import type { NativeTokenizer, TensorData } from '../binding.js';
import { WanError, type WanErrorCode, badArgument } from './errors.js';
import { INVALID_CHARREFS, INVALID_CODEPOINTS, NAMED_ENTITIES } from './html_entities.js';
import { nativeTokenizer } from './native.js';
import { int64Tensor } from './tensor.js';

/** The official Wan2.2 default negative prompt (wan/configs/shared_config.py `sample_neg_prompt`). */
export const DEFAULT_NEGATIVE_PROMPT =
  '色调艳丽，过曝，静态，细节模糊不清，字幕，风格，作品，画作，画面，静止，整体发灰，最差质量，低质量，JPEG压缩残留，丑陋的，残缺的，多余的手指，画得不好的手部，画得不好的脸部，畸形的，毁容的，形态畸形的肢体，手指融合，静止不动的画面，杂乱的背景，三条腿，背景人很多，倒着走';

/** T5 special ids (the umt5 spiece.model and the bundled tiny one agree). */
export const PAD_ID = 0;
export const EOS_ID = 1;
/** Text length of every Wan2.2 model (`max_sequence_length`). */
export const TEXT_LENGTH = 512;

// Python's html.unescape: the same reference pattern (lengths in code points, hence the u flag).
const CHARREF = /&(#[0-9]+;?|#[xX][0-9a-fA-F]+;?|[^\t\n\f <&#;]{1,32};?)/gu;

function decodeCharref(ref: string): string {
  if (ref[0] === '#') {
    const hex = ref[1] === 'x' || ref[1] === 'X';
    const digits = ref.slice(hex ? 2 : 1).replace(/;$/, '');
    const num = Number.parseInt(digits, hex ? 16 : 10); // huge values overflow past 0x10FFFF: U+FFFD below
    if (Object.hasOwn(INVALID_CHARREFS, String(num))) return INVALID_CHARREFS[String(num)];
    if ((num >= 0xd800 && num <= 0xdfff) || num > 0x10ffff) return '\ufffd';
    if (INVALID_CODEPOINTS.has(num)) return '';
    return String.fromCodePoint(num);
  }
  if (Object.hasOwn(NAMED_ENTITIES, ref)) return NAMED_ENTITIES[ref];
  // The longest known prefix (legacy references such as "&ampx" need no ";").
  const chars = Array.from(ref);
  for (let n = chars.length - 1; n > 1; n--) {
    const prefix = chars.slice(0, n).join('');
    if (Object.hasOwn(NAMED_ENTITIES, prefix)) return NAMED_ENTITIES[prefix] + chars.slice(n).join('');
  }
  return '&' + ref;
}

/** Python's `html.unescape`: every HTML5 named and numeric character reference. */
export function htmlUnescape(text: string): string {
  if (!text.includes('&')) return text;
  return text.replace(CHARREF, (_m, ref: string) => decodeCharref(ref));
}

// What the reference's whitespace means (JS's \s differs: it has U+FEFF, lacks U+0085):
// str.strip() strips what str.isspace() accepts; the runs it collapses are the `regex` module's \s
// (diffusers and Wan2.2 `import regex as re`), which is that set less U+001C-U+001F.
const REGEX_SPACE = '\\t\\n\\v\\f\\r \\x85\\xa0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000';
const PY_SPACE = `\\x1c-\\x1f${REGEX_SPACE}`;
const SPACE_RUNS = new RegExp(`[${REGEX_SPACE}]+`, 'g');
const EDGE_SPACE = new RegExp(`^[${PY_SPACE}]+|[${PY_SPACE}]+$`, 'g');

function pyStrip(text: string): string {
  return text.replace(EDGE_SPACE, '');
}

/**
 * The reference pipeline's prompt cleaning (diffusers `prompt_clean`): HTML-unescape twice, strip,
 * collapse whitespace runs to one space, strip. Not done: `ftfy.fix_text`, which diffusers applies
 * first when ftfy is installed and Wan2.2's own code always: besides repairing mojibake it makes
 * curly quotes straight, splits ligatures and turns fullwidth characters (the default Chinese
 * negative prompt's '，') into ASCII, so token ids can differ from such a reference.
 */
export function cleanPrompt(text: string): string {
  const unescaped = pyStrip(htmlUnescape(htmlUnescape(text)));
  return pyStrip(unescaped.replace(SPACE_RUNS, ' '));
}

export interface TokenizedPrompts {
  /** int64 [B, maxLength]: ids, EOS after the text, then pad ids. */
  inputIds: TensorData;
  /** int64 [B, maxLength]: 1 for real tokens (EOS included), 0 for padding. */
  attentionMask: TensorData;
  /** Real tokens per prompt (EOS included). */
  lengths: number[];
}

/** The T5 tokenizer of a Diffusers `tokenizer/` folder, from its `spiece.model`. */
export class Tokenizer {
  private constructor(
    private readonly model: NativeTokenizer,
    /** The spiece.model file. */
    readonly file: string,
  ) {}

  /** Loads `<dir>/spiece.model`; a missing or corrupt file is ERR_WAN_BAD_CHECKPOINT naming it. */
  static load(dir: string): Tokenizer {
    if (typeof dir !== 'string') throw badArgument('dir', 'must be a string');
    const file = path.join(dir, 'spiece.model');
    const addon = nativeTokenizer();
    try {
      return new Tokenizer(addon.loadSentencePiece(file), file);
    } catch (err) {
      const code = (err as { code?: string }).code;
      if (code?.startsWith('ERR_WAN_')) throw new WanError(code as WanErrorCode, (err as Error).message, { cause: err });
      throw err;
    }
  }

  get vocabSize(): number {
    return this.model.vocabSize();
  }

  /** SentencePiece ids of the cleaned prompt, without EOS. */
  encode(prompt: string): number[] {
    return this.model.encode(cleanPrompt(prompt));
  }

  /** Cleans, encodes, appends EOS, truncates to maxLength keeping EOS last, pads with PAD_ID. */
  tokenize(prompts: string[], maxLength = TEXT_LENGTH): TokenizedPrompts {
    if (!Array.isArray(prompts) || prompts.some((p) => typeof p !== 'string'))
      throw badArgument('prompt', 'must be a string or an array of strings');
    if (!Number.isInteger(maxLength) || maxLength < 1) throw badArgument('maxLength', `is ${maxLength}`, 'an integer >= 1');
    const ids = new Array<number>(prompts.length * maxLength).fill(PAD_ID);
    const mask = new Array<number>(prompts.length * maxLength).fill(0);
    const lengths: number[] = [];
    prompts.forEach((prompt, b) => {
      const tokens = this.encode(prompt).slice(0, maxLength - 1);
      tokens.push(EOS_ID);
      for (let i = 0; i < tokens.length; i++) {
        ids[b * maxLength + i] = tokens[i];
        mask[b * maxLength + i] = 1;
      }
      lengths.push(tokens.length);
    });
    return {
      inputIds: int64Tensor([prompts.length, maxLength], ids),
      attentionMask: int64Tensor([prompts.length, maxLength], mask),
      lengths,
    };
  }
}
