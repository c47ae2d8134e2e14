// Validation of caller options: every unknown or invalid option is ERR_WAN_BAD_ARGUMENT naming it.
import { badArgument } from './errors.js';

export function rejectUnknown(options: object, known: readonly string[], what: string): void {
  for (const key of Object.keys(options)) {
    if (!known.includes(key)) throw badArgument(key, `is not a ${what} option`, known.map((k) => `'${k}'`).join(', '));
  }
}

export function oneOf<T extends string>(value: unknown, name: string, allowed: readonly T[]): T {
  if (typeof value !== 'string' || !allowed.includes(value as T)) {
    throw badArgument(name, `is ${JSON.stringify(value)}`, allowed.map((a) => `'${a}'`).join(', '));
  }
  return value as T;
}

export function integer(value: unknown, name: string, min: number, max: number): number {
  if (typeof value !== 'number' || !Number.isInteger(value) || value < min || value > max) {
    throw badArgument(name, `is ${JSON.stringify(value)}`, `an integer from ${min} to ${max}`);
  }
  return value;
}

export function finiteNumber(value: unknown, name: string, min: number, max = Number.MAX_VALUE, exclusiveMin = false): number {
  if (typeof value !== 'number' || !Number.isFinite(value) || value < min || (exclusiveMin && value === min) || value > max) {
    throw badArgument(name, `is ${JSON.stringify(value)}`, `a finite number ${exclusiveMin ? '>' : '>='} ${min}${max < Number.MAX_VALUE ? ` and <= ${max}` : ''}`);
  }
  return value;
}

export function isDevice(value: unknown): boolean {
  return typeof value === 'string' && /^(cpu|cuda|cuda:\d{1,3})$/.test(value);
}
