"""The reference modules timed the way wan_bench times ours, for a side-by-side ratio in the same run.

diffusers WanTransformer3DModel (bf16, SDPA; a DiT step with CFG = two batch-1 forwards, as
WanPipeline calls it), transformers UMT5EncoderModel (umt5-xxl, 512 tokens) and, with --vae,
diffusers AutoencoderKLWan decode. Random weights from each module's own init, built directly on
the device in the compute dtype (timing only: values do not matter; the modules kept in float32 by
from_pretrained are cast back to float32). One JSON line per model on stdout and in --out.

  python3 bench/device/reference_bench.py --model a14b --out $OUT/reference.jsonl [--size 1280x720x81]
  python3 bench/device/reference_bench.py --model small --device cpu --dtype float32   # CPU dry run
"""
import argparse
import gc

import torch

from common import (DEFAULT_SIZE, dit_config, dit_tokens, dtype_of, emit, latent_shape, peak, reset_peak, sdpa_backend,
                    time_calls, umt5_config)

STEPS = {"a14b": 40, "ti2v5b": 50, "small": 40}


def build(factory, dtype, device):
    """factory() built on `device` with `dtype` as the default floating dtype (no float32 copy first)."""
    previous = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        with torch.device(device):
            model = factory()
    finally:
        torch.set_default_dtype(previous)
    keep = list(getattr(model, "_keep_in_fp32_modules", None) or [])
    for name, param in model.named_parameters():
        if any(k in name.split(".") for k in keep):
            param.data = param.data.float()
    return model.eval()


def free(device):
    gc.collect()
    if str(device).startswith("cuda"):
        torch.cuda.empty_cache()


def bench_text(args, device, dtype):
    from transformers import UMT5Config, UMT5EncoderModel

    cfg = umt5_config("small" if args.model == "small" else "xxl")
    reset_peak(device)
    model = build(lambda: UMT5EncoderModel(UMT5Config(**cfg)), dtype, device)
    ids = torch.randint(2, cfg["vocab_size"], (1, 512), device=device)
    mask = torch.ones(1, 512, dtype=torch.long, device=device)
    with torch.no_grad():
        timing = time_calls(device, args.warmup, args.iters, lambda: model(input_ids=ids, attention_mask=mask))
    result = {**timing, **peak(device), "weight_bytes": sum(p.numel() * p.element_size() for p in model.parameters())}
    del model
    free(device)
    return result


def bench_dit(args, device, dtype, size):
    from diffusers import WanTransformer3DModel

    cfg = dit_config(args.model, args.layers)
    width, height, frames = size
    reset_peak(device)
    model = build(lambda: WanTransformer3DModel(**cfg), dtype, device)
    latents = torch.randn(latent_shape(args.model, width, height, frames), device=device, dtype=dtype)
    # As the pipelines call it (and wan_bench times it): one timestep, or for TI2V-5B (expand_timesteps)
    # one per token, which runs the time embedding per token.
    tokens = dit_tokens(args.model, width, height, frames)
    timestep = torch.full((1, tokens), 500, device=device) if args.model == "ti2v5b" else torch.tensor([500], device=device)
    cond = torch.randn(1, 512, cfg["text_dim"], device=device, dtype=dtype)
    uncond = torch.randn(1, 512, cfg["text_dim"], device=device, dtype=dtype)

    def step():
        model(latents, timestep, cond, return_dict=False)
        model(latents, timestep, uncond, return_dict=False)

    with torch.no_grad():
        timing = time_calls(device, args.warmup, args.iters, step)
    result = {**timing, **peak(device), "weight_bytes": sum(p.numel() * p.element_size() for p in model.parameters()),
              "timestep_values": timestep.numel()}
    # The layout diffusers passes to SDPA: [B, S, H, D] memory viewed as [B, H, S, D].
    q = torch.empty(1, tokens, cfg["num_attention_heads"], cfg["attention_head_dim"], device=device, dtype=dtype).transpose(1, 2)
    result["sdpa_backend"] = sdpa_backend(q)
    del model, latents, q
    free(device)
    return result


def bench_vae(args, device, size):
    """Decode of the model's VAE (Wan2.1 for A14B, Wan2.2 for TI2V-5B) in float32, whole frames."""
    from diffusers import AutoencoderKLWan

    from common import vae_config

    cfg = vae_config(args.model)  # the same configs as wan_bench's vae_decode (small: base_dim 16)
    width, height, frames = size
    reset_peak(device)
    model = build(lambda: AutoencoderKLWan(**cfg), torch.float32, device)
    z_dim = cfg["z_dim"]
    spatial = 16 if args.model == "ti2v5b" else 8
    z = torch.randn(1, z_dim, (frames - 1) // 4 + 1, height // spatial, width // spatial, device=device)
    with torch.no_grad():
        # Warm-up as for ours (cuDNN plans, lazy kernel loading): the first 2 latent frames only, which
        # run every convolution shape of the whole decode (the first frame's path and the cached path
        # of each later frame) at a fraction of its cost; wan_bench warms up the same way. Then one
        # timed decode of all the frames.
        for _ in range(args.warmup):
            model.decode(z[:, :, :2], return_dict=False)
        timing = time_calls(device, 0, 1, lambda: model.decode(z, return_dict=False))
    result = {**timing, **peak(device), "weight_bytes": sum(p.numel() * p.element_size() for p in model.parameters()),
              "warmup_latent_frames": min(2, z.shape[2]) if args.warmup > 0 else 0}
    del model, z
    free(device)
    return result


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="a14b", choices=["a14b", "ti2v5b", "small"])
    p.add_argument("--size", type=lambda s: tuple(int(x) for x in s.split("x")), help="WxHxF (default: the model's real size)")
    p.add_argument("--device", default="cuda")
    p.add_argument("--dtype", default="bfloat16")
    p.add_argument("--layers", type=int)
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--iters", type=int, default=2)
    p.add_argument("--skip", default="", help="comma list of text,dit")
    p.add_argument("--vae", action="store_true", help="also time the reference VAE decode (float32, whole frames; warm-up on the first 2 latent frames)")
    p.add_argument("--out", help="append the JSON line here")
    args = p.parse_args()
    device, dtype = args.device, dtype_of(args.dtype)
    size = args.size or DEFAULT_SIZE[args.model]
    skip = set(args.skip.split(","))
    torch.manual_seed(0)

    record = {"tool": "reference", "model": args.model, "device": device, "dtype": args.dtype, "torch": torch.__version__,
              "width": size[0], "height": size[1], "frames": size[2], "tokens": dit_tokens(args.model, *size),
              "steps": STEPS[args.model]}
    if device.startswith("cuda"):
        record["gpu"] = torch.cuda.get_device_name()
    if "text" not in skip:
        record["text_encode"] = bench_text(args, device, dtype)
    if "dit" not in skip:
        record["dit_step"] = bench_dit(args, device, dtype, size)
    record["vae_decode"] = bench_vae(args, device, size) if args.vae else None
    record["end_to_end_seconds"] = (record.get("text_encode", {}).get("seconds_min", 0)
                                    + record["steps"] * record.get("dit_step", {}).get("seconds_min", 0)
                                    + (record["vae_decode"] or {}).get("seconds_min", 0))
    emit(record, args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
