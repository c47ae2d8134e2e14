import { execFileSync, spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { nativePath } from '../lib/native.js';
import { toFloat64 } from '../lib/tensor.js';
import { DEFAULT_NEGATIVE_PROMPT, EOS_ID, Tokenizer, cleanPrompt, htmlUnescape } from '../lib/text.js';

const ROOT = path.join(path.dirname(fileURLToPath(import.meta.url)), '..');

// Training text of the test's own SentencePiece model (T5's default nmt_nfkc normalization).
const CORPUS = [
  'A white cat wearing sunglasses sits on a surfboard at the beach.',
  'A red fox runs through the snowy forest at dawn, cinematic lighting.',
  'Tom and Jerry chase each other through the kitchen, "quickly" <3.',
  'The camera slowly pans across a busy street at night, neon lights in the rain.',
  'Un chat blanc est assis sur une planche de surf. Café, crème brûlée.',
  '一只戴着墨镜的白猫坐在海滩的冲浪板上。',
  '色调艳丽，过曝，静态，细节模糊不清，字幕，风格，作品，画作，画面，静止，整体发灰，最差质量，低质量。',
  '丑陋的，残缺的，多余的手指，画得不好的手部，画得不好的脸部，畸形的，毁容的，三条腿，背景人很多，倒着走。',
  'Кошка сидит на доске для серфинга на пляже.',
].join('\n');

let dir: string;
let tokenizer: Tokenizer;

function tokenizerAddonPath(): string {
  return process.env.WAN_VIDEO_TOKENIZER_ADDON ?? path.join(path.dirname(nativePath()), 'tokenizer', 'wan_tokenizer.node');
}

function readVarint(buf: Buffer, pos: number): [number, number] {
  let value = 0;
  for (let shift = 0; ; shift += 7) {
    const b = buf[pos++];
    value += (b & 0x7f) * 2 ** shift;
    if (!(b & 0x80)) return [value, pos];
  }
}

function varint(n: number): Buffer {
  const out: number[] = [];
  do {
    out.push((n % 128) | (n >= 128 ? 0x80 : 0));
    n = Math.floor(n / 128);
  } while (n > 0);
  return Buffer.from(out);
}

/** A protobuf message with the payload of every length-delimited field `field` replaced by edit(payload). */
function editBytesField(message: Buffer, field: number, edit: (payload: Buffer) => Buffer): Buffer {
  const parts: Buffer[] = [];
  let pos = 0;
  while (pos < message.length) {
    const start = pos;
    let key: number;
    [key, pos] = readVarint(message, pos);
    const wire = key & 7;
    if (wire === 0) [, pos] = readVarint(message, pos);
    else if (wire === 1) pos += 8;
    else if (wire === 5) pos += 4;
    else if (wire === 2) {
      const keyEnd = pos;
      let n: number;
      [n, pos] = readVarint(message, pos);
      if (key >>> 3 === field) {
        const payload = edit(message.subarray(pos, pos + n));
        parts.push(message.subarray(start, keyEnd), varint(payload.length), payload);
        pos += n;
        continue;
      }
      pos += n;
    } else throw new Error(`wire type ${wire} in a SentencePiece model`);
    parts.push(message.subarray(start, pos));
  }
  return Buffer.concat(parts);
}

function spmEncode(text: string): number[] {
  const out = execFileSync('spm_encode', [`--model=${path.join(dir, 'spiece.model')}`, '--output_format=id'], { input: text + '\n', encoding: 'utf8' });
  const line = out.split('\n')[0].trim();
  return line === '' ? [] : line.split(/\s+/).map(Number);
}

function ids(t: { data: unknown }): number[] {
  return Array.from(toFloat64(t as never));
}

async function expectThrows(fn: () => unknown, code: string, ...fragments: string[]) {
  let err: (Error & { code?: string }) | undefined;
  try {
    await fn();
  } catch (e) {
    err = e as Error & { code?: string };
  }
  expect(err, `expected ${code}`).toBeInstanceOf(Error);
  expect(err!.code).toBe(code);
  for (const f of fragments) expect(err!.message).toContain(f);
}

beforeAll(() => {
  dir = mkdtempSync(path.join(tmpdir(), 'wan-tok-'));
  writeFileSync(path.join(dir, 'corpus.txt'), CORPUS);
  execFileSync(
    'spm_train',
    [
      '--input=corpus.txt',
      '--model_prefix=spiece',
      '--vocab_size=160',
      '--character_coverage=1.0',
      '--pad_id=0',
      '--eos_id=1',
      '--unk_id=2',
      '--bos_id=-1',
      '--num_threads=1',
      '--minloglevel=2',
    ],
    { cwd: dir, stdio: 'pipe' },
  );
  tokenizer = Tokenizer.load(dir);
});

afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('cleanPrompt (the reference prompt_clean)', () => {
  it('unescapes HTML twice', () => {
    expect(cleanPrompt('a&amp;amp;b')).toBe('a&b');
    expect(cleanPrompt('&lt;b&gt; &quot;x&quot; &#39;y&#39;')).toBe('<b> "x" \'y\'');
  });

  it('collapses whitespace runs (tabs, newlines, Unicode spaces) to one space and strips', () => {
    expect(cleanPrompt('  a\t\tb\n\nc   d \r\n')).toBe('a b c d');
    // Expected values printed by diffusers' prompt_clean (without ftfy) with regex 2026.9.29: its \s
    // lacks U+001C-U+001F, which str.strip() still strips at the ends.
    expect(cleanPrompt('\u3000猫\u00a0\u2003狗\u0085x\u001fy ')).toBe('猫 狗 x\u001fy');
    expect(cleanPrompt('\x1c a \x1f')).toBe('a');
    expect(cleanPrompt('a\x1c\x1db')).toBe('a\x1c\x1db');
    // U+FEFF is not whitespace for Python (it is for JS's \s).
    expect(cleanPrompt('a\ufeffb')).toBe('a\ufeffb');
    expect(cleanPrompt(' \n\t ')).toBe('');
    // Entities that decode to whitespace are collapsed too.
    expect(cleanPrompt('a&nbsp;&nbsp;&#10;b&amp;nbsp;')).toBe('a b');
  });

  it('matches Python html.unescape on edge cases', () => {
    // Expected values printed by Python 3.11 html.unescape.
    expect(htmlUnescape('&ampx &notit; &notin; &copy2024')).toBe('&x \u00acit; \u2209 \u00a92024');
    expect(htmlUnescape('&#x1F600; &#128512; &#0; &#x80; &#xD800; &#1114112; &#1;')).toBe('\u{1F600} \u{1F600} \ufffd \u20ac \ufffd \ufffd ');
    expect(htmlUnescape('&unknown; & &; &#; &#xZ')).toBe('&unknown; & &; &#; &#xZ');
    expect(htmlUnescape('&NotNestedGreaterGreater; &Afr; &amp')).toBe('\u2aa2\u0338 \u{1D504} &');
    expect(htmlUnescape('caf&eacute; &nbsp;x &constructor; &toString')).toBe('caf\u00e9 \u00a0x &constructor; &toString');
  });
});

describe('Tokenizer (SentencePiece spiece.model)', () => {
  const cases: Array<[string, string, string]> = [
    ['ASCII', 'A white cat wearing sunglasses sits on a surfboard.', 'A white cat wearing sunglasses sits on a surfboard.'],
    ['Chinese', '一只戴着墨镜的白猫坐在冲浪板上，画面静止。', '一只戴着墨镜的白猫坐在冲浪板上，画面静止。'],
    ['emoji', 'a cat 😀 on the beach 🏄', 'a cat 😀 on the beach 🏄'],
    ['HTML entities', 'Tom &amp;amp; Jerry &lt;3 &quot;quickly&quot;\n\n  café', 'Tom & Jerry <3 "quickly" café'],
    ['mixed scripts', 'Кошка  и\tкот, chat et chien, 猫和狗', 'Кошка и кот, chat et chien, 猫和狗'],
  ];
  for (const [name, prompt, cleaned] of cases) {
    it(`${name}: ids of spm_encode on the cleaned text, then EOS, then padding`, () => {
      const expected = spmEncode(cleaned);
      expect(expected.length).toBeGreaterThan(0);
      const t = tokenizer.tokenize([prompt]);
      expect(t.inputIds.shape).toEqual([1, 512]);
      expect(t.attentionMask.shape).toEqual([1, 512]);
      expect(t.inputIds.dtype).toBe('int64');
      expect(t.lengths).toEqual([expected.length + 1]);
      const got = ids(t.inputIds);
      expect(got.slice(0, expected.length + 1)).toEqual([...expected, EOS_ID]);
      expect(got.slice(expected.length + 1).every((v) => v === 0)).toBe(true);
      const mask = ids(t.attentionMask);
      expect(mask.slice(0, expected.length + 1).every((v) => v === 1)).toBe(true);
      expect(mask.slice(expected.length + 1).every((v) => v === 0)).toBe(true);
    });
  }

  it('the emoji is unknown to this vocabulary (id 2), not dropped', () => {
    expect(tokenizer.encode('😀')).toContain(2);
  });

  it('long prompts truncate at 512 keeping EOS last', () => {
    const prompt = 'the white cat and the red fox run through the snowy forest '.repeat(60);
    const expected = spmEncode(cleanPrompt(prompt));
    expect(expected.length).toBeGreaterThan(600);
    const t = tokenizer.tokenize([prompt]);
    expect(t.lengths).toEqual([512]);
    expect(ids(t.inputIds)).toEqual([...expected.slice(0, 511), EOS_ID]);
    expect(ids(t.attentionMask).every((v) => v === 1)).toBe(true);
    // A smaller maxLength truncates the same way.
    const short = tokenizer.tokenize([prompt], 8);
    expect(ids(short.inputIds)).toEqual([...expected.slice(0, 7), EOS_ID]);
  });

  it('an empty prompt is just EOS', () => {
    for (const p of ['', '  \n\t ']) {
      const t = tokenizer.tokenize([p]);
      expect(t.lengths).toEqual([1]);
      const got = ids(t.inputIds);
      expect(got[0]).toBe(EOS_ID);
      expect(got.slice(1).every((v) => v === 0)).toBe(true);
      expect(ids(t.attentionMask)).toEqual([1, ...new Array(511).fill(0)]);
    }
  });

  it('a batch gives one row per prompt', () => {
    const t = tokenizer.tokenize(['a white cat', DEFAULT_NEGATIVE_PROMPT, '']);
    expect(t.inputIds.shape).toEqual([3, 512]);
    const expected = spmEncode(DEFAULT_NEGATIVE_PROMPT);
    expect(t.lengths).toEqual([spmEncode('a white cat').length + 1, expected.length + 1, 1]);
    expect(ids(t.inputIds).slice(512, 512 + expected.length + 1)).toEqual([...expected, EOS_ID]);
  });

  it('rejects bad arguments', async () => {
    await expectThrows(() => tokenizer.tokenize(['ok', 3 as never]), 'ERR_WAN_BAD_ARGUMENT', 'prompt');
    await expectThrows(() => tokenizer.tokenize(['ok'], 0), 'ERR_WAN_BAD_ARGUMENT', 'maxLength');
  });

  it('the default negative prompt is the official Wan2.2 one', () => {
    expect(DEFAULT_NEGATIVE_PROMPT.startsWith('色调艳丽，过曝，静态，细节模糊不清，字幕，风格')).toBe(true);
    expect(DEFAULT_NEGATIVE_PROMPT.endsWith('杂乱的背景，三条腿，背景人很多，倒着走')).toBe(true);
    expect(DEFAULT_NEGATIVE_PROMPT.length).toBe(137);
  });

  it('a missing spiece.model is ERR_WAN_BAD_CHECKPOINT naming the file', async () => {
    const empty = mkdtempSync(path.join(tmpdir(), 'wan-tok-missing-'));
    try {
      await expectThrows(() => Tokenizer.load(empty), 'ERR_WAN_BAD_CHECKPOINT', path.join(empty, 'spiece.model'));
    } finally {
      rmSync(empty, { recursive: true, force: true });
    }
  });

  it('a corrupt spiece.model is ERR_WAN_BAD_CHECKPOINT naming the file', async () => {
    const bad = mkdtempSync(path.join(tmpdir(), 'wan-tok-corrupt-'));
    try {
      const file = path.join(bad, 'spiece.model');
      const good = readFileSync(path.join(dir, 'spiece.model'));
      for (const bytes of [Buffer.from('this is not a sentencepiece model\n'), Buffer.alloc(0), good.subarray(0, good.length >> 1)]) {
        writeFileSync(file, bytes);
        await expectThrows(() => Tokenizer.load(bad), 'ERR_WAN_BAD_CHECKPOINT', file);
      }
    } finally {
      rmSync(bad, { recursive: true, force: true });
    }
  });

  it('a hostile normalization table (precompiled_charsmap) is ERR_WAN_BAD_CHECKPOINT at load, never a crash at encode', () => {
    // SentencePiece 0.1.97 reads the table's double-array trie and replacement strings unchecked.
    // Variants of this test's own model (nmt_nfkc, a real table), each encoded in a child process.
    const good = readFileSync(path.join(dir, 'spiece.model'));
    const variants: Record<string, (charsmap: Buffer) => Buffer> = {
      'root node leading outside the trie': (c) => {
        const out = Buffer.from(c);
        out.writeUInt32LE(((0x3fffff << 10) | (1 << 9)) >>> 0, 4);
        return out;
      },
      'trie size running past the end': (c) => {
        const out = Buffer.from(c);
        out.writeUInt32LE(c.length - 2, 0);
        return out;
      },
      'replacement strings without their NUL terminators': (c) => {
        const trieEnd = 4 + c.readUInt32LE(0);
        return Buffer.concat([c.subarray(0, trieEnd), Buffer.from(c.subarray(trieEnd).map((b) => (b === 0 ? 0x78 : b)))]);
      },
    };
    const hostileDir = mkdtempSync(path.join(tmpdir(), 'wan-tok-charsmap-'));
    try {
      let edited = 0;
      for (const [name, edit] of Object.entries(variants)) {
        const file = path.join(hostileDir, `${name.replace(/\W+/g, '-')}.model`);
        // normalizer_spec (field 3) -> precompiled_charsmap (field 2)
        writeFileSync(file, editBytesField(good, 3, (spec) => editBytesField(spec, 2, (c) => (edited++, edit(c)))));
        const r = spawnSync(
          process.execPath,
          ['-e', `try { const t = require(${JSON.stringify(tokenizerAddonPath())}).loadSentencePiece(${JSON.stringify(file)});
                    console.log(JSON.stringify({ ids: t.encode('A white cat, café crème 一只猫 ＡＢＣ') }));
                  } catch (e) { console.log(JSON.stringify({ code: e.code, message: e.message })); }`],
          { encoding: 'utf8', timeout: 30_000 },
        );
        expect(r.signal, `${name}: ${r.stderr}`).toBeNull();
        const out = JSON.parse(r.stdout.trim());
        expect(out.code, `${name}: ${r.stdout}`).toBe('ERR_WAN_BAD_CHECKPOINT');
        expect(out.message).toContain(file);
        expect(out.message).toContain('precompiled_charsmap');
      }
      expect(edited).toBe(Object.keys(variants).length);
    } finally {
      rmSync(hostileDir, { recursive: true, force: true });
    }
  });

  it('the bundled tiny tokenizer loads: T5 special ids and the tiny text encoder vocabulary', () => {
    const tiny = Tokenizer.load(path.join(ROOT, 'models', 'tiny', 'tokenizer'));
    expect(tiny.vocabSize).toBe(256);
    const t = tiny.tokenize(['A white cat on a surfboard', DEFAULT_NEGATIVE_PROMPT]);
    const got = ids(t.inputIds);
    expect(got.every((v) => v >= 0 && v < 256)).toBe(true);
    expect(got[t.lengths[0] - 1]).toBe(EOS_ID);
    // Every character of the default negative prompt is in its vocabulary (no unknown id 2).
    expect(got.slice(512, 512 + t.lengths[1])).not.toContain(2);
  });
});

describe('tokenizer addon beside the libtorch addon', () => {
  // Debian's libsentencepiece and libtorch each carry a protobuf: they must live in two .node files
  // and load in either order in one process.
  const mainAddon = nativePath();
  const tokenizerAddon = tokenizerAddonPath();
  const script = (first: 'main' | 'tokenizer') => `
    const main = ${JSON.stringify(mainAddon)}, tok = ${JSON.stringify(tokenizerAddon)};
    const order = ${JSON.stringify(first)} === 'main' ? [main, tok] : [tok, main];
    const loaded = order.map((f) => require(f));
    const [m, t] = ${JSON.stringify(first)} === 'main' ? loaded : [loaded[1], loaded[0]];
    const sp = t.loadSentencePiece(${JSON.stringify(path.join(ROOT, 'models', 'tiny', 'tokenizer', 'spiece.model'))});
    const r = m.randn(1, [3]);
    console.log(JSON.stringify({ ids: sp.encode('a white cat'), vocab: sp.vocabSize(), randn: r.shape }));
  `;
  for (const first of ['main', 'tokenizer'] as const) {
    it(`loads ${first === 'main' ? 'main addon first' : 'tokenizer addon first'}`, () => {
      const r = spawnSync(process.execPath, ['-e', script(first)], { encoding: 'utf8' });
      expect(r.stderr).toBe('');
      expect(r.status).toBe(0);
      const out = JSON.parse(r.stdout.trim());
      expect(out.vocab).toBe(256);
      expect(out.ids.length).toBeGreaterThan(0);
      expect(out.randn).toEqual([3]);
    });
  }
});
