import { describe, expect, it } from 'vitest';

import { native } from '../lib/native.js';
import { fixtureCase } from './helpers/fixtures.js';

describe('randn matches torch.manual_seed + torch.randn bit for bit', () => {
  it('every global/randn entry', async () => {
    const c = await fixtureCase('global', 'randn');
    const entries = c.json.params.entries as Array<{ tensor: string; seed: number; shape: number[] }>;
    expect(entries.length).toBeGreaterThan(0);
    for (const e of entries) {
      const ref = c.tensors[e.tensor];
      const got = native().randn(e.seed, e.shape);
      expect(got.shape).toEqual(e.shape);
      expect(Buffer.from(got.data.buffer).equals(Buffer.from(ref.data.buffer, ref.data.byteOffset, ref.data.byteLength))).toBe(true);
    }
  });
});
