export { WanError, type WanErrorCode } from './errors.js';
export { runtimeInfo, type RuntimeInfo } from './runtime.js';
