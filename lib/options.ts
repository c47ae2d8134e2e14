// Validation of caller options: every unknown or invalid option is ERR_WAN_BAD_ARGUMENT naming it.
import { badArgument } from './errors.js';

/**
 * A caller's value as error messages show it. Never throws: JSON.stringify throws on a BigInt and
 * prints NaN and Infinity as "null", which would hide or misstate the value the caller passed.
 */
export function describeValue(value: unknown): string {
  if (typeof value === 'bigint') return `${value}n (a BigInt)`;
  if (typeof value === 'number') return Object.is(value, -0) ? '-0' : String(value); // NaN, Infinity as such
  if (typeof value === 'function') return 'a function';
  if (typeof value === 'symbol') return value.toString();
  if (value === undefined) return 'undefined';
  let text: string | undefined;
  try {
    text = JSON.stringify(value);
  } catch {
    // A BigInt inside an object, a cycle, a throwing toJSON: name the kind of value instead.
  }
  if (text === undefined) text = Object.prototype.toString.call(value);
  // A huge prompt or array would flood the message.
  return text.length > 100 ? `${text.slice(0, 97)}...` : text;
}

export function rejectUnknown(options: object, known: readonly string[], what: string): void {
  for (const key of Object.keys(options)) {
    if (!known.includes(key)) throw badArgument(key, `is not a ${what} option`, known.map((k) => `'${k}'`).join(', '));
  }
}

export function oneOf<T extends string>(value: unknown, name: string, allowed: readonly T[]): T {
  if (typeof value !== 'string' || !allowed.includes(value as T)) {
    throw badArgument(name, `is ${describeValue(value)}`, allowed.map((a) => `'${a}'`).join(', '));
  }
  return value as T;
}

export function integer(value: unknown, name: string, min: number, max: number): number {
  if (typeof value !== 'number' || !Number.isInteger(value) || value < min || value > max) {
    throw badArgument(name, `is ${describeValue(value)}`, `an integer from ${min} to ${max}`);
  }
  return value;
}

export function finiteNumber(value: unknown, name: string, min: number, max = Number.MAX_VALUE, exclusiveMin = false): number {
  if (typeof value !== 'number' || !Number.isFinite(value) || value < min || (exclusiveMin && value === min) || value > max) {
    throw badArgument(name, `is ${describeValue(value)}`, `a finite number ${exclusiveMin ? '>' : '>='} ${min}${max < Number.MAX_VALUE ? ` and <= ${max}` : ''}`);
  }
  return value;
}

export function isDevice(value: unknown): boolean {
  return typeof value === 'string' && /^(cpu|cuda|cuda:\d{1,3})$/.test(value);
}
