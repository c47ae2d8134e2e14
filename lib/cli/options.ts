// Value parsers for the CLI flags. Each throws commander's InvalidArgumentError, which commander
// reports as "error: option '--flag <value>' argument 'x' is invalid. <why>" and exits 1.
import { InvalidArgumentError } from 'commander';

import type { Device } from '../types.js';

export function parseSize(value: string): { width: number; height: number } {
  const m = /^(\d+)[x×X](\d+)$/.exec(value.trim());
  if (!m) throw new InvalidArgumentError('Expected WIDTHxHEIGHT, e.g. 1280x704.');
  const width = Number(m[1]);
  const height = Number(m[2]);
  if (width < 1 || height < 1) throw new InvalidArgumentError('Width and height must be positive.');
  return { width, height };
}

export function positiveInt(value: string): number {
  const n = Number(value);
  if (!/^\s*\d+\s*$/.test(value) || !Number.isSafeInteger(n) || n < 1) {
    throw new InvalidArgumentError('Expected a positive integer.');
  }
  return n;
}

export function seedValue(value: string): number {
  const n = Number(value);
  if (!/^\s*\d+\s*$/.test(value) || !Number.isSafeInteger(n)) {
    throw new InvalidArgumentError(`Expected an integer from 0 to ${Number.MAX_SAFE_INTEGER}.`);
  }
  return n;
}

export function nonNegativeNumber(value: string): number {
  const n = Number(value);
  if (value.trim() === '' || !Number.isFinite(n) || n < 0) throw new InvalidArgumentError('Expected a number >= 0.');
  return n;
}

export function positiveNumber(value: string): number {
  const n = Number(value);
  if (value.trim() === '' || !Number.isFinite(n) || n <= 0) throw new InvalidArgumentError('Expected a number > 0.');
  return n;
}

export function deviceValue(value: string): Device {
  if (value === 'cpu' || value === 'cuda' || /^cuda:\d+$/.test(value)) return value as Device;
  throw new InvalidArgumentError('Expected cpu, cuda or cuda:N.');
}
