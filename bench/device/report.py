"""Prints the short table of a device run: parity, kernel check, and our time vs the reference's.

  python3 bench/device/report.py OUT_DIR        (reads fixtures.jsonl, parity.jsonl, kernel.jsonl, ours.jsonl, reference.jsonl, offload.jsonl, pipeline.jsonl)
Also writes OUT_DIR/summary.md (the table in Markdown, for bench/RESULTS.md).
"""
import json
import os
import sys


def read_lines(path):
    if not os.path.exists(path):
        return []
    with open(path) as f:
        return [json.loads(l) for l in f if l.startswith("{")]


def latest(path, key):
    """The JSON lines of `path`, the last one per key(line): results accumulate over device calls,
    and a phase run again replaces its earlier rows."""
    rows = {}
    for r in read_lines(path):
        rows[key(r)] = r
    return list(rows.values())


def size_of(r):
    return (r["model"], r["width"], r["height"], r["frames"])


def table(header, rows):
    """A Markdown table (header, separator, rows), or nothing when there are no rows."""
    return [header, "|" + "---|" * (header.count("|") - 1), *rows] if rows else []


def fmt(v, spec=".3g"):
    return "-" if v is None else format(v, spec)


def gib(v):
    return "-" if not v else f"{v / 2**30:.1f} GiB"


# A backend (or an order of them) becomes the default only if its output agrees (bench/device/README.md).
AGREE_COSINE = 0.999


def agreement(a):
    """'cos 0.9999987, max rel 2.1e-03' and, below AGREE_COSINE or non-finite, DISAGREES."""
    if not a:
        return "-"
    cos = a.get("cosine")
    bad = cos is None or cos < AGREE_COSINE or not a.get("finite", True)
    return f"cos {fmt(cos, '.7f')}, max rel {fmt(a.get('max_rel'), '.2e')}{' DISAGREES' if bad else ''}"


def fused_note(o):
    # Only where a CUDA build could have them: a CPU build never does.
    if o.get("device", "cpu").startswith("cpu") or "fused_kernels" not in o:
        return ""
    return "; fused kernels on" if o["fused_kernels"] else "; fused kernels OFF (WAN_FUSED_KERNELS=0)"


def main():
    out = sys.argv[1]
    rows = []
    for r in latest(os.path.join(out, "fixtures.jsonl"), lambda r: (r["device"], r["offload"])):
        w = r.get("worst") or {}
        failures = f"; failed: {', '.join(r['failures'][:3])}" if r["failures"] else ""
        rows.append(f"| golden fixtures wan-tiny ({r['device']}, {r['dtype']}, offload {r['offload']}) | {r['passed']} passed, {r['failed']} failed |"
                    f" closest to tolerance: {w.get('name', '-')} {fmt(w.get('error'), '.2e')} of {fmt(w.get('tolerance'), '.1e')}{failures} | |"
                    f" {'PASS' if r['failed'] == 0 and r['passed'] > 0 else 'FAIL'} |")
    for r in latest(os.path.join(out, "parity.jsonl"), lambda r: (r["check"], str(r.get("model", r.get("size"))), str(r.get("layers")), r.get("dtype"))):
        c = r.get("ours_vs_ref") or {}  # absent when the shapes differed (r["error"] says how)
        fp32 = r.get("ours_vs_ref_fp32", {})
        ref_fp32 = r.get("ref_vs_ref_fp32", {})
        if r["check"] == "vae_decode":
            what = f"vae_decode {r['model']} ({r['layers']}, {'x'.join(map(str, r['size']))}, {r['dtype']})"
        else:
            size = r.get("size")
            at = f", {'x'.join(map(str, size))}" if r.get("model") and isinstance(size, list) else ""
            what = f"{r['check']} {r.get('model', size)} ({r['layers']} layers{at}, {r['dtype']})"
        load = f"; ours loads in {r['ours_load_seconds']:.3g} s" if r.get("ours_load_seconds") else ""
        rows.append(f"| parity {what} | cos {fmt(c.get('cosine'), '.6f')} | rel_l2 {fmt(c.get('rel_l2'), '.2e')} {r.get('error', '')}| vs fp32: ours {fmt(fp32.get('rel_l2'), '.2e')},"
                    f" ref {fmt(ref_fp32.get('rel_l2'), '.2e')}{load} | {'PASS' if r['pass'] else 'FAIL'} |")
    for r in read_lines(os.path.join(out, "kernel.jsonl")):
        if "case" in r:
            rows.append(f"| kernel {r['case']} | rel {fmt(r.get('rel_error'), '.2e')} | cos {fmt(r.get('cosine'), '.7f')} | | {'PASS' if r['ok'] else 'FAIL'} |")
        elif "timing" in r:
            rows.append(f"| kernel timing {r['tokens']}x{r['dim']} bf16 | fused {r['fused_ms']:.3f} ms | reference {r['reference_ms']:.3f} ms |"
                        f" {r['speedup']:.2f}x, {r['fused_gb_per_s']:.0f} GB/s | |")

    refs = {(r["model"], r["width"], r["height"], r["frames"]): r for r in read_lines(os.path.join(out, "reference.jsonl"))}
    bench = []
    for o in latest(os.path.join(out, "ours.jsonl"), lambda o: (*size_of(o), o.get("sdpa_order", "default"))):
        key = (o["model"], o["width"], o["height"], o["frames"])
        ref = refs.get(key, {})
        order = o.get("sdpa_order", "default")
        for comp in ("dit_step", "text_encode", "vae_decode"):
            ours_c, ref_c = o.get(comp) or {}, ref.get(comp) or {}
            if not ours_c and (not ref_c or order != "default"):
                continue
            label = comp
            if comp == "vae_decode" and ours_c.get("counted"):
                label += f" ({ours_c['counted']}, {ours_c.get('dtype', 'float32')})"  # the reference decodes whole frames
            if comp == "dit_step" and o["model"] == "ti2v5b":
                label += " (one timestep for all tokens)"  # as text-to-video; image-to-video uses per-token timesteps
            if order != "default":
                label += f" (SDPA order {order})"
            ours_s, ref_s = ours_c.get("seconds_min"), ref_c.get("seconds_min")
            speedup = ref_s / ours_s if ours_s and ref_s else None
            bench.append(f"| {o['model']} {o['width']}x{o['height']}x{o['frames']} | {label} | {fmt(ours_s, '.4g')} s | {fmt(ref_s, '.4g')} s |"
                         f" {fmt(speedup, '.2f')}x | {fmt(ours_c.get('tflops'), '.3g')} | {fmt(ours_c.get('fraction_of_floor') or None, '.2f')} |"
                         f" {gib(ours_c.get('peak_bytes'))} | {gib(ref_c.get('peak_bytes'))} |")
        if order != "default":
            vs = o.get("dit_step_vs_default_order")
            if vs:  # the step in this order against the same step in libtorch's default order
                bench.append(f"| {o['model']} {o['width']}x{o['height']}x{o['frames']} | dit_step output, order {order} vs default"
                             f" ({vs.get('default_priority', '-')}) | {agreement(vs)} | | | | | | |")
            continue  # a partial run (the DiT step only): no end-to-end or rates rows
        e2e_ref = ref.get("end_to_end_seconds")
        # A pair run without the decode (a size whose VAE another pair times): say so.
        no_decode = "" if o.get("vae_decode") else ", no decode"
        bench.append(f"| {o['model']} {o['width']}x{o['height']}x{o['frames']} | end to end ({o['steps']} steps{no_decode}) | {fmt(o.get('end_to_end_seconds'), '.4g')} s |"
                     f" {fmt(e2e_ref, '.4g')} s | | | | | |")
        rates = o.get("rates") or {}
        bench.append(f"| {o['model']} | rates | matmul {fmt(rates.get('matmul_tflops'), '.3g')} TFLOP/s | attention {fmt(rates.get('attention_tflops'), '.3g')} TFLOP/s"
                     f" ({rates.get('attention_backend', '-')}; at DiT shape: {o.get('sdpa_backend_at_dit_shape', '-')},"
                     f" order tried: {o.get('sdpa_priority', '-')}; reference: {(ref.get('dit_step') or {}).get('sdpa_backend', '-')})"
                     f"{fused_note(o)} | | | | | |")
        by_backend = o.get("attention_tflops_at_dit_shape") or {}
        if by_backend:
            each = ", ".join(f"{name} {fmt(v, '.3g')}" if v is not None else f"{name} does not take it" for name, v in by_backend.items())
            bench.append(f"| {o['model']} {o['width']}x{o['height']}x{o['frames']} | self-attention TFLOP/s per SDPA backend | {each} | | | | | | |")
        agree = o.get("attention_agreement_at_dit_shape") or {}
        if agree:
            vs_ref = "; ".join(f"{name} {agreement(a)}" for name, a in (agree.get("vs_reference") or {}).items()) or "no other backend ran"
            vs_f32 = "; ".join(f"{name} {agreement(a)}" for name, a in (agree.get("vs_float32") or {}).items()) or "-"
            bench.append(f"| {o['model']} {o['width']}x{o['height']}x{o['frames']} | self-attention output per SDPA backend |"
                         f" vs {agree.get('reference', '-')}: {vs_ref} | vs float32 ({agree.get('float32_rows', '-')} query rows): {vs_f32} | | | | | |")

    offload = []
    for o in latest(os.path.join(out, "offload.jsonl"), lambda o: (*size_of(o), (o.get("dit_step_offload") or {}).get("offload"))):
        resident, placed = o.get("dit_step") or {}, o.get("dit_step_offload") or {}
        offload.append(f"| {o['model']} {o['width']}x{o['height']}x{o['frames']} | {placed.get('offload', '?')} | {fmt(resident.get('seconds_min'), '.4g')} s |"
                       f" {fmt(placed.get('seconds_min'), '.4g')} s | {gib(placed.get('upload_bytes_per_step'))} |"
                       f" {gib(resident.get('peak_bytes'))} | {gib(placed.get('peak_bytes'))} |"
                       f" {'bit-identical' if placed.get('matches_resident') else 'DIFFERS'} |")

    pipeline = []
    for o in latest(os.path.join(out, "pipeline.jsonl"), lambda o: (*size_of(o), o["pipeline"].get("offload"), o["pipeline"].get("tiled_decode"))):
        p = o["pipeline"]
        pipeline.append(f"| {o['model']} {o['width']}x{o['height']}x{o['frames']} | {p['offload']}{' + tiled decode' if p.get('tiled_decode') else ''} |"
                        f" {fmt(p.get('denoise_step_seconds_min'), '.4g')} s | {fmt(p.get('decode_seconds'), '.4g')} s | {gib(p.get('peak_bytes'))} |"
                        f" {gib(p.get('peak_allocated_bytes'))} | {fmt(p.get('load_seconds'), '.3g')} s | {'yes' if p.get('video_finite') else 'NO'} |")

    # Only the sections this run produced (npm run bench --reference has no parity or kernel rows).
    sections = [t for t in (
        table("| check | result | detail | detail | verdict |", rows),
        table("| model / size | component | ours | reference | ref/ours | ours TFLOP/s | of floor | ours peak | ref peak |", bench),
        table("| model / size | offload | step resident | step offloaded ('model': incl. a full upload) | uploaded per step | peak resident | peak offloaded | output |", offload),
        table("| model / size | pipeline offload | step (CFG) | decode | peak (CUDA reserved; CPU RSS) | peak allocated | build | finite video |", pipeline),
    ) if t]
    text = "\n\n".join("\n".join(s) for s in sections) if sections else "(no results)"
    with open(os.path.join(out, "summary.md"), "w") as f:
        f.write(text + "\n")
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
