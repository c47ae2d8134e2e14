import { native, nativePath } from './native.js';

export interface RuntimeInfo {
  /** libtorch version the addon was built against, e.g. '1.13.0' or '2.11.0'. */
  libtorchVersion: string;
  /** 'cuda' when built against a CUDA libtorch. */
  flavour: 'cpu' | 'cuda';
  cudaAvailable: boolean;
  /** Why CUDA cannot be used, when `cudaAvailable` is false: a CPU build says so; a CUDA build that sees no GPU gives
   *  the CUDA runtime's reason (no device, a driver missing or too old) and what to check. */
  cudaUnavailableReason?: string;
  /** The CUDA build's fused kernels (LayerNorm + modulation) run where they apply; false in a CPU build and
   *  with WAN_FUSED_KERNELS=0, which runs the reference formulas instead. */
  fusedKernels: boolean;
  /** Intra-op threads libtorch uses on the CPU. */
  threads: number;
  /** 'cpu', then each CUDA device: name 'cuda:N', its model (e.g. 'NVIDIA H100 80GB HBM3'), memory and compute capability. */
  devices: Array<{ type: 'cpu' | 'cuda'; name: string; index?: number; model?: string; totalMemory?: number; computeCapability?: string }>;
  /** The .node file that was loaded. */
  addonPath: string;
}

/** What this installation of wan-video runs on. Throws ERR_WAN_NO_LIBTORCH when the addon cannot load. */
export function runtimeInfo(): RuntimeInfo {
  const info = native().runtimeInfo();
  return {
    libtorchVersion: info.libtorchVersion,
    flavour: info.flavour,
    cudaAvailable: info.cudaAvailable,
    ...(info.cudaUnavailableReason !== undefined ? { cudaUnavailableReason: info.cudaUnavailableReason } : {}),
    fusedKernels: info.fusedKernels,
    threads: info.threads,
    devices: info.devices,
    addonPath: nativePath(),
  };
}
