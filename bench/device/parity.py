"""GPU parity at full width: our components vs the reference implementations on the SAME random weights.

For each DiT config (A14B expert, TI2V-5B) a diffusers WanTransformer3DModel with `--layers` blocks at
full width gets its own default random init, is saved in the Diffusers layout (config.json +
safetensors, bf16), then run by diffusers (bf16 and float32) and by our `wan_run dit` (bf16) on the
same inputs at the real video size. Same for UMT5 (transformers UMT5EncoderModel at umt5-xxl width)
against `wan_run umt5`. Prints one JSON line per comparison and appends them to --out/parity.jsonl.

  python3 bench/device/parity.py --tool build-device/Release/wan_run --out $OUT [--device cuda] [--layers 2]
  python3 bench/device/parity.py --tool ... --models small --umt5 small --device cpu --dtype float32   # CPU dry run

Pass: cosine(ours, diffusers bf16) >= 0.999 (issue 8). The float32 reference shows how far each
bf16 run is from the exact result (ours should be about as far as diffusers' own bf16 run).

VAE decode: a diffusers AutoencoderKLWan per --vae model (a14b: the Wan2.1 VAE, ti2v5b: the Wan2.2 VAE,
small: a tiny one) at full width with its default random init, saved in the Diffusers layout
(--vae-dtype, float32 by default as the pipelines load it), decodes the same random latents as our
`wan_run vae-decode` (whole frames on both sides) at --vae-size (default 832x480x17: the reference
holds whole frames of every stage, and parity does not need 720p). Pass: cosine >= 0.999.
"""
import argparse
import gc
import os
import shutil

import torch
from safetensors.torch import load_file, save_file

from common import (compare, dit_config, dtype_of, emit, latent_shape, load_diffusers, load_pretrained, run_tool,
                    umt5_config, vae_config, DEFAULT_SIZE)


def free(device):
    gc.collect()
    if str(device).startswith("cuda"):
        torch.cuda.empty_cache()


def save_random_model(make_model, folder, dtype, device):
    """A fresh model with its own default random init (seed 0), saved in `folder` in `dtype`."""
    shutil.rmtree(folder, ignore_errors=True)
    torch.manual_seed(0)
    with torch.device(device):
        model = make_model()
    model.to(dtype).save_pretrained(folder, safe_serialization=True)
    del model
    free(device)


def reference_outputs(run_reference, dtype, device):
    """{dtype: output} of `run_reference(ref_dtype)` (float32 on the CPU) in the compute dtype and,
    when that is not float32, in float32 too. Each run's model is freed before the next one loads."""
    outputs = {}
    for ref_dtype in (dtype, torch.float32):
        with torch.no_grad():
            outputs[ref_dtype] = run_reference(ref_dtype)
        free(device)
        if dtype == torch.float32:
            break
    return outputs


def run_ours(args, command, folder, inputs, ours_path, dtype_name, output_key):
    """Our `wan_run <command>` on the saved inputs: (its output tensor, the tool's info)."""
    info = run_tool([args.tool, command, "--model", folder, "--inputs", inputs, "--out", ours_path,
                     "--device", args.device, "--dtype", dtype_name], os.path.join(args.out, "parity-tools.log"))
    return load_file(ours_path)[output_key], info


def record_comparison(record, ours, outputs, dtype, args, folder):
    """Compares ours with the reference in the compute dtype (and both with float32 where that ran),
    decides pass (cosine >= 0.999, all finite), appends the record and drops the random checkpoint."""
    record["ours_vs_ref"] = compare(ours, outputs[dtype])
    if torch.float32 in outputs and dtype != torch.float32:
        record["ours_vs_ref_fp32"] = compare(ours, outputs[torch.float32])
        record["ref_vs_ref_fp32"] = compare(outputs[dtype], outputs[torch.float32])
    record["pass"] = record["ours_vs_ref"]["cosine"] >= 0.999 and record["ours_vs_ref"]["finite"]
    emit(record, os.path.join(args.out, "parity.jsonl"))
    if not args.keep:
        shutil.rmtree(folder, ignore_errors=True)
    return record["pass"]


def dit_parity(name, args, work):
    from diffusers import WanTransformer3DModel

    device, dtype = args.device, dtype_of(args.dtype)
    cfg = dit_config(name, args.layers)
    width, height, frames = DEFAULT_SIZE[name] if args.size is None else args.size
    folder = os.path.join(work, f"dit-{name}")
    save_random_model(lambda: WanTransformer3DModel(**cfg), folder, dtype, device)

    # Inputs rounded to the compute dtype once, so that both sides see identical values.
    shape = latent_shape(name, width, height, frames)
    gen = torch.Generator().manual_seed(1)
    hidden = torch.randn(shape, generator=gen).to(dtype).float()
    context = torch.randn(1, 512, cfg["text_dim"], generator=gen).to(dtype).float()
    seq = shape[2] * (shape[3] // 2) * (shape[4] // 2)
    if name == "ti2v5b":  # expand_timesteps: per-token timesteps, first-frame tokens at 0 (the TI2V I2V path)
        timestep = torch.full((1, seq), 500, dtype=torch.long)
        timestep[:, : (shape[3] // 2) * (shape[4] // 2)] = 0
    else:
        timestep = torch.tensor([500], dtype=torch.long)
    inputs = os.path.join(work, f"dit-{name}-inputs.safetensors")
    save_file({"hidden_states": hidden, "timestep": timestep, "encoder_hidden_states": context}, inputs)

    def run_reference(ref_dtype):
        ref = load_diffusers(WanTransformer3DModel, folder, ref_dtype, device)
        return ref(hidden.to(device, ref_dtype), timestep.to(device), context.to(device, ref_dtype), return_dict=False)[0].float().cpu()

    outputs = reference_outputs(run_reference, dtype, device)
    ours, info = run_ours(args, "dit", folder, inputs, os.path.join(work, f"dit-{name}-ours.safetensors"), args.dtype, "sample")
    record = {"check": "dit", "model": name, "layers": cfg["num_layers"], "size": [width, height, frames], "tokens": seq,
              "dtype": args.dtype, "device": device, "ours_seconds": info.get("seconds"), "ours_load_seconds": info.get("load_seconds")}
    return record_comparison(record, ours, outputs, dtype, args, folder)


def umt5_parity(size, args, work):
    from transformers import UMT5Config, UMT5EncoderModel

    device, dtype = args.device, dtype_of(args.dtype)
    cfg = umt5_config(size, args.text_layers)
    folder = os.path.join(work, f"umt5-{size}")
    save_random_model(lambda: UMT5EncoderModel(UMT5Config(**cfg)), folder, dtype, device)

    gen = torch.Generator().manual_seed(2)
    length, real = 512, 100
    ids = torch.randint(2, cfg["vocab_size"], (1, length), generator=gen)
    ids[:, real - 1] = 1  # EOS
    ids[:, real:] = 0
    mask = torch.zeros(1, length, dtype=torch.long)
    mask[:, :real] = 1
    inputs = os.path.join(work, f"umt5-{size}-inputs.safetensors")
    save_file({"input_ids": ids, "attention_mask": mask}, inputs)

    def run_reference(ref_dtype):
        ref = load_pretrained(UMT5EncoderModel, folder, ref_dtype, device)
        return ref(input_ids=ids.to(device), attention_mask=mask.to(device)).last_hidden_state.float().cpu()

    outputs = reference_outputs(run_reference, dtype, device)
    ours, info = run_ours(args, "umt5", folder, inputs, os.path.join(work, f"umt5-{size}-ours.safetensors"), args.dtype,
                          "last_hidden_state")
    record = {"check": "umt5", "size": size, "layers": cfg["num_layers"], "dtype": args.dtype, "device": device,
              "real_tokens": real, "ours_seconds": info.get("seconds"), "ours_load_seconds": info.get("load_seconds")}
    # The pipeline keeps only the real tokens (rows past the prompt are zeroed), so compare those.
    real_rows = {k: v[:, :real] for k, v in outputs.items()}
    return record_comparison(record, ours[:, :real], real_rows, dtype, args, folder)


def vae_parity(name, args, work):
    from diffusers import AutoencoderKLWan

    device, dtype = args.device, dtype_of(args.vae_dtype)
    cfg = vae_config(name)
    width, height, frames = args.vae_size
    folder = os.path.join(work, f"vae-{name}")
    save_random_model(lambda: AutoencoderKLWan(**cfg), folder, dtype, device)

    spatial, z_dim = cfg["scale_factor_spatial"], cfg["z_dim"]
    if width % spatial or height % spatial or (frames - 1) % 4:
        raise ValueError(f"--vae-size {width}x{height}x{frames}: W and H must be multiples of {spatial}, F = 4k+1")
    shape = (1, z_dim, (frames - 1) // 4 + 1, height // spatial, width // spatial)
    gen = torch.Generator().manual_seed(3)
    latents = torch.randn(shape, generator=gen).to(dtype).float()  # rounded to the compute dtype once
    inputs = os.path.join(work, f"vae-{name}-inputs.safetensors")
    save_file({"latents": latents}, inputs)

    def run_reference(ref_dtype):
        ref = load_diffusers(AutoencoderKLWan, folder, ref_dtype, device)
        return ref.decode(latents.to(device, ref_dtype), return_dict=False)[0].float().cpu()

    outputs = reference_outputs(run_reference, dtype, device)
    ours, info = run_ours(args, "vae-decode", folder, inputs, os.path.join(work, f"vae-{name}-ours.safetensors"), args.vae_dtype,
                          "sample")
    record = {"check": "vae_decode", "model": name, "layers": f"base_dim {cfg['base_dim']}", "size": [width, height, frames],
              "latent_shape": list(shape), "dtype": args.vae_dtype, "device": device, "ours_seconds": info.get("seconds"), "ours_load_seconds": info.get("load_seconds")}
    if tuple(ours.shape) != tuple(outputs[dtype].shape):
        record.update({"pass": False, "error": f"shape {list(ours.shape)} vs reference {list(outputs[dtype].shape)}"})
        emit(record, os.path.join(args.out, "parity.jsonl"))
        return False
    return record_comparison(record, ours, outputs, dtype, args, folder)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--tool", required=True, help="path to our wan_run binary")
    p.add_argument("--out", required=True, help="folder for parity.jsonl and logs")
    p.add_argument("--work", help="scratch folder for weights (default: --out/work)")
    p.add_argument("--device", default="cuda")
    p.add_argument("--dtype", default="bfloat16")
    p.add_argument("--models", default="a14b,ti2v5b", help="DiT configs: a14b, ti2v5b, small")
    p.add_argument("--layers", type=int, default=2, help="DiT blocks at full width (weights file ~0.7 GB per A14B block)")
    p.add_argument("--size", type=lambda s: tuple(int(x) for x in s.split("x")), help="WxHxF (default: the model's real size)")
    p.add_argument("--umt5", default="xxl", help="xxl, small or none")
    p.add_argument("--text-layers", type=int, default=2)
    p.add_argument("--vae", default="a14b,ti2v5b", help="VAE decode checks: a14b (Wan2.1), ti2v5b (Wan2.2), small; or none")
    p.add_argument("--vae-size", type=lambda s: tuple(int(x) for x in s.split("x")), default=(832, 480, 17), help="WxHxF of the decoded video")
    p.add_argument("--vae-dtype", default="float32")
    p.add_argument("--keep", action="store_true", help="keep the random checkpoints")
    args = p.parse_args()
    torch.backends.cuda.matmul.allow_tf32 = False  # parity runs: no TF32 anywhere
    torch.backends.cudnn.allow_tf32 = False
    os.makedirs(args.out, exist_ok=True)
    work = args.work or os.path.join(args.out, "work")
    os.makedirs(work, exist_ok=True)

    ok = True
    for name in [m for m in args.models.split(",") if m]:
        ok = dit_parity(name, args, work) and ok
    if args.umt5 != "none":
        ok = umt5_parity(args.umt5, args, work) and ok
    for name in [m for m in args.vae.split(",") if m and m != "none"]:
        ok = vae_parity(name, args, work) and ok
    print(f"parity: {'pass' if ok else 'FAIL'}", flush=True)
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
