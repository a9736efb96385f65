"""Peak memory and time of attention capture at long lengths (issue 6).

A 12-layer, 12-head ``nn.TransformerEncoder`` with random weights reads 4,096 tokens. Each case runs in
its own fresh Python process (so one case's peak cannot hide another's), the cases interleaved and
repeated; the peak is the process's resident-set high-water mark (``ru_maxrss``, which sees torch's CPU
allocations that tracemalloc misses) or ``torch.cuda.max_memory_allocated`` on CUDA. Full maps would be
``layers x heads x T^2 x 4`` bytes (9.7 GB at 4,096 tokens); they are not materialised here.

PyTorch's own native multi-head-attention kernel (its inference fast path) forms the ``[B, H, T, T]``
scores even with ``need_weights=False`` (805 MB per layer here), in the *model's* forward, capture or
not. So that the figures show what capture costs, every case (bare included) runs with that fast path
off (``torch.backends.mha.set_fastpath_enabled(False)``: attention then goes through
``scaled_dot_product_attention``, whose CPU kernel is memory-lean); ``--native-mha`` keeps it on.

Cases:
  bare      the forward pass alone, no capture (torch's fused encoder fast path)
  cls       ns.attention(reduce="cls"): query row 0 of every head and layer
  cls_topk  reduce={"rows": [0], "topk": k}
  topk      reduce={"topk": k}: the top-k keys of every query row of every head (all 4,096 rows)
  rollout   rollout=True, keep=False: attention rollout accumulated layer by layer

    python benchmarks/attention_memory.py                    # CPU, 4,096 tokens, ~3 minutes
    python benchmarks/attention_memory.py --repeats 3 --cases bare,cls,cls_topk,topk,rollout
    python benchmarks/attention_memory.py --device cuda --tokens 8192 --d-model 768
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time

CASES = ("bare", "cls", "cls_topk", "topk", "rollout")


def _model(args: argparse.Namespace):
    import torch
    from torch import nn

    torch.manual_seed(0)
    layer = nn.TransformerEncoderLayer(
        args.d_model, args.heads, 4 * args.d_model, dropout=0.0, batch_first=True
    )
    return nn.TransformerEncoder(layer, args.layers, enable_nested_tensor=False).to(args.device).eval()


def child(args: argparse.Namespace) -> None:
    import torch

    import netsight as ns

    torch.set_num_threads(args.threads)
    if not args.native_mha:
        torch.backends.mha.set_fastpath_enabled(False)
    model = _model(args)
    x = torch.randn(1, args.tokens, args.d_model, device=args.device)
    cuda = args.device.startswith("cuda")
    with torch.no_grad():  # warm up kernels on a short input so their one-time buffers are in the baseline
        model(x[:, :64])
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
    else:
        base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    kept = 0
    t0 = time.perf_counter()
    if args.case == "bare":
        with torch.no_grad():
            model(x)
    else:
        reduce = {
            "cls": "cls",
            "cls_topk": {"rows": [0], "topk": args.topk},
            "topk": {"topk": args.topk},
            "rollout": None,
        }[args.case]
        maps = ns.attention(
            model, x, reduce=reduce, rollout=args.case == "rollout", keep=args.case != "rollout"
        )
        kept = sum(
            t.numel() * t.element_size() for t in list(maps.maps.values()) + list(maps.indices.values())
        )
        if maps.rollout is not None:
            kept += maps.rollout.numel() * maps.rollout.element_size()
    if cuda:
        torch.cuda.synchronize()
    seconds = time.perf_counter() - t0
    peak = (
        torch.cuda.max_memory_allocated()
        if cuda
        else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    )
    print(json.dumps({"case": args.case, "peak": peak, "base": base, "seconds": seconds, "kept": kept}))


def run_case(args: argparse.Namespace, case: str) -> dict:
    cmd = [sys.executable, __file__, "--child", case]
    for key in ("tokens", "layers", "heads", "d_model", "topk", "device", "threads"):
        cmd += [f"--{key.replace('_', '-')}", str(getattr(args, key))]
    if args.native_mha:
        cmd.append("--native-mha")
    out = subprocess.run(cmd, capture_output=True, text=True, check=True, timeout=1800)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--tokens", type=int, default=4096)
    p.add_argument("--layers", type=int, default=12)
    p.add_argument("--heads", type=int, default=12)
    p.add_argument("--d-model", type=int, default=384)
    p.add_argument("--topk", type=int, default=16)
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--repeats", type=int, default=1)
    p.add_argument("--cases", default="bare,cls_topk,topk")
    p.add_argument("--native-mha", action="store_true", help="keep PyTorch's native MHA fast path on")
    p.add_argument("--child", choices=CASES)
    args = p.parse_args()
    if args.child:
        args.case = args.child
        child(args)
        return

    cases = [c for c in args.cases.split(",") if c]
    full = args.layers * args.heads * args.tokens**2 * 4
    print(
        f"encoder: {args.layers} layers x {args.heads} heads, d_model {args.d_model}, {args.tokens} tokens, "
        f"device {args.device}, {args.threads} threads, native MHA fast path "
        f"{'on' if args.native_mha else 'off'}; full maps would be {full / 1e9:.1f} GB"
    )
    results: dict[str, list[dict]] = {c: [] for c in cases}
    for r in range(args.repeats):
        for c in cases:  # interleaved: every case once per round
            res = run_case(args, c)
            results[c].append(res)
            print(
                f"  round {r + 1} {c:9s} peak {res['peak'] / 2**20:8.0f} MiB  {res['seconds']:7.2f} s",
                flush=True,
            )
    unit = "GPU allocated" if args.device.startswith("cuda") else "process RSS"
    print(f"\nmedian over {args.repeats} rounds ({unit} high-water mark):")
    print(f"{'case':10s} {'peak MiB':>9s} {'over start':>11s} {'kept MiB':>9s} {'time s':>8s} {'x bare':>7s}")
    bare_t = statistics.median(x["seconds"] for x in results["bare"]) if "bare" in results else None
    for c in cases:
        peak = statistics.median(x["peak"] for x in results[c]) / 2**20
        over = statistics.median(x["peak"] - x["base"] for x in results[c]) / 2**20
        kept = statistics.median(x["kept"] for x in results[c]) / 2**20
        t = statistics.median(x["seconds"] for x in results[c])
        ratio = f"{t / bare_t:7.2f}" if bare_t else "      -"
        print(f"{c:10s} {peak:9.0f} {over:11.0f} {kept:9.2f} {t:8.2f} {ratio}")


if __name__ == "__main__":
    main()
