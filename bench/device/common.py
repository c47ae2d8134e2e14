"""Shared helpers of the GPU-machine scripts: model configs, metrics, JSON lines, running our tools.

Never run on the CPU machines of CI (no torch there); see bench/device/README.md for what has been run.
"""
import json
import os
import subprocess
import sys
import time

import torch

FIXTURES = os.path.join(os.path.dirname(__file__), "..", "..", "test", "fixtures", "wan-tiny")

# Real sizes (the tiny fixtures' configs carry every other field with its real value).
DIT_CONFIGS = {
    "a14b": dict(template="t2v-a14b-tiny", num_attention_heads=40, attention_head_dim=128, num_layers=40,
                 ffn_dim=13824, in_channels=16, out_channels=16, text_dim=4096),
    "ti2v5b": dict(template="ti2v-5b-tiny", num_attention_heads=24, attention_head_dim=128, num_layers=30,
                   ffn_dim=14336, in_channels=48, out_channels=48, text_dim=4096),
    # Seconds on a CPU: for dry runs of these scripts.
    "small": dict(template="t2v-a14b-tiny", num_attention_heads=4, attention_head_dim=32, num_layers=2,
                  ffn_dim=256, in_channels=16, out_channels=16, text_dim=64),
}
# VAE spatial factor per model (Wan2.1 VAE 8, Wan2.2 VAE 16) and default video size (W, H, frames).
VAE_SPATIAL = {"a14b": 8, "ti2v5b": 16, "small": 8}
DEFAULT_SIZE = {"a14b": (1280, 720, 81), "ti2v5b": (1280, 704, 121), "small": (128, 128, 9)}

UMT5_XXL = dict(vocab_size=256384, d_model=4096, d_kv=64, d_ff=10240, num_layers=24, num_heads=64)
UMT5_SMALL = dict(vocab_size=256, d_model=64, d_kv=16, d_ff=128, num_layers=2, num_heads=4)


def dit_config(model, num_layers=None):
    """A complete diffusers WanTransformer3DModel config dict for `model` (template fields + real sizes)."""
    spec = dict(DIT_CONFIGS[model])
    with open(os.path.join(FIXTURES, spec.pop("template"), "transformer", "config.json")) as f:
        cfg = json.load(f)
    cfg.update(spec)
    if num_layers is not None:
        cfg["num_layers"] = num_layers
    return {k: v for k, v in cfg.items() if not k.startswith("_")}


# The VAE of each model at its real width (Wan-AI/Wan2.2-*-Diffusers vae/config.json); "small" is the
# tiny Wan2.1-style VAE that wan_bench's small config decodes (base_dim 16).
VAE_CONFIGS = {
    "a14b": dict(template="t2v-a14b-tiny", base_dim=96, decoder_base_dim=None),
    "ti2v5b": dict(template="ti2v-5b-tiny", base_dim=160, decoder_base_dim=256),
    "small": dict(template="t2v-a14b-tiny", base_dim=16, decoder_base_dim=None),
}


def vae_config(model):
    """A complete diffusers AutoencoderKLWan config dict for `model`'s VAE (template fields + real widths).
    Fields the installed diffusers does not know (clip_output in older releases) are dropped."""
    import inspect

    spec = dict(VAE_CONFIGS[model])
    with open(os.path.join(FIXTURES, spec.pop("template"), "vae", "config.json")) as f:
        cfg = json.load(f)
    cfg.update(spec)
    cfg = {k: v for k, v in cfg.items() if not k.startswith("_")}
    try:
        from diffusers import AutoencoderKLWan
        known = set(inspect.signature(AutoencoderKLWan.__init__).parameters)
        cfg = {k: v for k, v in cfg.items() if k in known}
    except ImportError:
        pass
    return cfg


def umt5_config(size, num_layers=None):
    with open(os.path.join(FIXTURES, "t2v-a14b-tiny", "text_encoder", "config.json")) as f:
        cfg = json.load(f)
    cfg.update(UMT5_XXL if size == "xxl" else UMT5_SMALL)
    if num_layers is not None:
        cfg["num_layers"] = num_layers
    for k in ("architectures", "torch_dtype", "transformers_version"):
        cfg.pop(k, None)
    return cfg


def latent_shape(model, width, height, frames):
    s = VAE_SPATIAL[model]
    in_ch = DIT_CONFIGS[model]["in_channels"]
    return (1, in_ch, (frames - 1) // 4 + 1, height // s, width // s)


def dit_tokens(model, width, height, frames):
    _, _, f, h, w = latent_shape(model, width, height, frames)
    return f * (h // 2) * (w // 2)


def dtype_of(name):
    return {"bfloat16": torch.bfloat16, "float16": torch.float16, "float32": torch.float32}[name]


def compare(ours, ref):
    """cosine similarity, max|a-b|/max|b| (the fixtures' metric) and ||a-b||/||b||, in float64."""
    a = ours.detach().double().flatten().cpu()
    b = ref.detach().double().flatten().cpu()
    diff = a - b
    return {
        "cosine": float(torch.dot(a, b) / (a.norm() * b.norm()).clamp_min(1e-300)),
        "rel_max": float(diff.abs().max() / b.abs().max().clamp_min(1e-300)),
        "rel_l2": float(diff.norm() / b.norm().clamp_min(1e-300)),
        "finite": bool(torch.isfinite(a).all()),
    }


def synchronize(device):
    if str(device).startswith("cuda"):
        torch.cuda.synchronize()


def time_calls(device, warmup, iters, fn):
    for _ in range(warmup):
        fn()
    synchronize(device)
    times = []
    for _ in range(iters):
        start = time.perf_counter()
        fn()
        synchronize(device)
        times.append(time.perf_counter() - start)
    return {"seconds": sum(times) / len(times), "seconds_min": min(times), "iters": iters}


def reset_peak(device):
    if str(device).startswith("cuda"):
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()


def peak(device):
    if str(device).startswith("cuda"):
        return {"peak_bytes": torch.cuda.max_memory_reserved(), "peak_allocated_bytes": torch.cuda.max_memory_allocated(),
                "peak_kind": "cuda_reserved"}
    return {"peak_bytes": None, "peak_kind": "not measured on cpu"}


def sdpa_backend(q):
    """Which fused SDPA kernel torch picks for q (=k=v): math, flash, efficient or cudnn."""
    try:
        choice = int(torch._fused_sdp_choice(q, q, q))
    except Exception as e:  # private API: name the failure instead of guessing
        return f"unknown ({type(e).__name__})"
    return {0: "math", 1: "flash_attention", 2: "efficient_attention", 3: "cudnn_attention"}.get(choice, f"backend_{choice}")


def emit(record, path=None):
    """Prints one JSON line and appends it to `path`."""
    line = json.dumps(record, sort_keys=True)
    print(line, flush=True)
    if path:
        with open(path, "a") as f:
            f.write(line + "\n")


def run_tool(args, log_path=None):
    """Runs one of our C++ tools; returns its last stdout line parsed as JSON. Raises with stderr on failure."""
    start = time.perf_counter()
    p = subprocess.run(args, capture_output=True, text=True)
    if log_path:
        with open(log_path, "a") as f:
            f.write(f"$ {' '.join(args)}\n{p.stdout}{p.stderr}(exit {p.returncode}, {time.perf_counter() - start:.1f} s)\n")
    if p.returncode != 0:
        sys.stderr.write(p.stdout + p.stderr)
        raise RuntimeError(f"{args[0]} exited {p.returncode}")
    lines = [l for l in p.stdout.splitlines() if l.startswith("{")]
    return json.loads(lines[-1]) if lines else {}


def load_diffusers(cls, folder, dtype, device):
    """A diffusers model from a save_pretrained folder, with from_pretrained's dtype rule (parameters
    whose dotted name has a part in cls._keep_in_fp32_modules stay float32, the rest `dtype`) but
    without its `accelerate` dependency (not installed on the GPU machine)."""
    import glob
    from safetensors.torch import load_file

    with torch.device(device):
        model = cls.from_config(cls.load_config(folder))
    # The checkpoint is read into host memory: at the full A14B expert, the float32 build (57 GB)
    # and the checkpoint (28.6 GB) would not both fit an 80 GB H100.
    state = {}
    for path in sorted(glob.glob(os.path.join(folder, "*.safetensors"))):
        state.update(load_file(path, device="cpu"))
    model.load_state_dict(state, strict=True)
    del state
    keep = list(cls._keep_in_fp32_modules or [])
    for name, param in model.named_parameters():
        if not any(k in name.split(".") for k in keep):
            param.data = param.data.to(dtype)
    return model.eval()


def load_pretrained(cls, path, dtype, device):
    """The library's own loading path (keeps its fp32 modules in fp32), then moved to `device`."""
    try:
        import transformers
        is_transformers = cls.__module__.startswith("transformers")
        major, minor = (int(x) for x in transformers.__version__.split(".")[:2])
        use_dtype_kw = is_transformers and (major, minor) >= (4, 56)
    except Exception:
        use_dtype_kw = False
    model = cls.from_pretrained(path, **({"dtype": dtype} if use_dtype_kw else {"torch_dtype": dtype}))
    big = max((p for p in model.parameters()), key=lambda p: p.numel())
    if big.dtype != dtype:
        raise RuntimeError(f"{cls.__name__}.from_pretrained gave {big.dtype}, not {dtype}")
    return model.to(device).eval()
