// A build without libsentencepiece has no tokenizer addon: models still load and generate from
// prompt embeddings, and only a text prompt is refused. Its own file: the addon is looked up once
// per process, and here it must be missing from the start.
import path from 'node:path';
import { fileURLToPath } from 'node:url';

import { describe, expect, it } from 'vitest';

import { WanPipeline } from '../lib/pipeline.js';

const TINY = path.join(path.dirname(fileURLToPath(import.meta.url)), '..', 'models', 'tiny');
process.env.WAN_VIDEO_TOKENIZER_ADDON = path.join(path.dirname(TINY), 'no-such-dir', 'wan_tokenizer.node');

describe('without the tokenizer addon', () => {
  it('loads a model with a tokenizer/ folder, runs on promptEmbeds, and refuses text prompts with ERR_WAN_NO_LIBTORCH', async () => {
    const pipe = await WanPipeline.load(TINY);
    try {
      const size = { width: 48, height: 32, numFrames: 5, steps: 2, seed: 7 };
      const embeds = { dtype: 'float32' as const, shape: [1, 512, 32], data: new Float32Array(512 * 32).fill(0.1) };
      const video = await pipe.generate({ ...size, promptEmbeds: embeds, negativePromptEmbeds: { ...embeds, data: new Float32Array(512 * 32) } });
      expect([video.width, video.height, video.numFrames]).toEqual([48, 32, 5]);

      for (let i = 0; i < 2; i++) {
        const err = await pipe.generate({ ...size, prompt: 'a red fox' }).then(
          () => undefined,
          (e: { code?: string; message: string }) => e,
        );
        expect(err?.code).toBe('ERR_WAN_NO_LIBTORCH');
        expect(err?.message).toContain('tokenizer addon');
        expect(err?.message).toContain('promptEmbeds');
      }
      // The refusal left the pipeline usable.
      const again = await pipe.generate({ ...size, guidanceScale: 1, promptEmbeds: embeds });
      expect(again.numFrames).toBe(5);
    } finally {
      await pipe.dispose();
    }
  });
});
