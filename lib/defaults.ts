// Per-family defaults (DESIGN.md: the released models' recommended settings).
import type { ModelFamily } from './types.js';

export interface FamilyDefaults {
  width: number;
  height: number;
  numFrames: number;
  fps: number;
  steps: number;
  shift: number;
  guidanceScale: number;
  /** A14B low-noise expert; undefined for one-expert models. */
  guidanceScale2?: number;
  /** I2V: the pixel area the size is fitted to, keeping the image's aspect. */
  area: number;
  /** Width and height must be multiples of this (VAE stride x patch). */
  sizeMultiple: number;
}

export const FAMILY_DEFAULTS: Record<ModelFamily, FamilyDefaults> = {
  't2v-a14b': { width: 1280, height: 720, numFrames: 81, fps: 16, steps: 40, shift: 12.0, guidanceScale: 4.0, guidanceScale2: 3.0, area: 1280 * 720, sizeMultiple: 16 },
  'i2v-a14b': { width: 1280, height: 720, numFrames: 81, fps: 16, steps: 40, shift: 5.0, guidanceScale: 3.5, guidanceScale2: 3.5, area: 1280 * 720, sizeMultiple: 16 },
  'ti2v-5b': { width: 1280, height: 704, numFrames: 121, fps: 24, steps: 50, shift: 5.0, guidanceScale: 5.0, area: 1280 * 704, sizeMultiple: 32 },
};
