"""Speed and memory of one SVI step at three shapes, side by side in one run.

Implementations (see benchmarks/_impls.py): pyro_sparse's Pyro step, the same maths in plain
PyTorch, an authors'-code-style per-feature loop (lean, and ``authors-full`` with the authors'
training script's per-step overheads), the naive (B, G, H) vectorisation, and the dense VAE.
Each (shape, implementation) is measured in a fresh subprocess at 1 torch thread
(peak RSS is per process), and the implementations are interleaved over rounds so that
machine noise hits them alike; the table reports the median over rounds.

Run:  .venv/bin/python benchmarks/speed.py            (6 minutes on a quiet 2-core machine)
Writes benchmarks/results/speed.{md,json} and speed_profile.txt (NAME.* with --name NAME).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
STEPS = {"synthetic": 60, "zeisel": 4, "movielens": 2}


def measure(shape: str, impl: str, steps: int, threads: int) -> dict:
    """Run in a subprocess: build, warm up 2 steps, time ``steps`` steps, report peak RSS."""
    import torch

    torch.set_num_threads(threads)
    sys.path.insert(0, str(HERE))
    from _impls import IMPLS, SHAPES, make_data

    x = make_data(shape)
    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    step = IMPLS[impl](shape, x)
    g = torch.Generator().manual_seed(0)
    B = SHAPES[shape]["B"]
    idxs = [torch.randperm(x.shape[0], generator=g)[:B] for _ in range(steps + 2)]
    for idx in idxs[:2]:
        step(idx)
    t0 = time.perf_counter()
    c0 = time.process_time()
    for idx in idxs[2:]:
        step(idx)
    wall = (time.perf_counter() - t0) / steps
    cpu = (time.process_time() - c0) / steps
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return dict(shape=shape, impl=impl, step_s=wall, step_cpu_s=cpu, peak_rss_mb=peak,
                base_rss_mb=rss0)


def decoder_rate(threads: int) -> dict:
    """Matmul peak and the fused decoder's forward+backward FLOP rate at the Zeisel shape."""
    import torch

    torch.set_num_threads(threads)
    from pyro_sparse.nn import sparse_decoder_forward

    def best(f, reps):
        f()
        ts = []
        for _ in range(reps):
            t = time.perf_counter()
            f()
            ts.append(time.perf_counter() - t)
        return min(ts)

    a, b = torch.randn(1024, 1024), torch.randn(1024, 1024)
    peak = 2 * 1024**3 / best(lambda: a @ b, 10) / 1e9
    a2, b2 = torch.randn(4096, 100), torch.randn(100, 100)
    peak_h = 2 * 4096 * 100 * 100 / best(lambda: a2 @ b2, 50) / 1e9
    out = {"matmul_peak_gflops_1024": peak, "matmul_gflops_4096x100x100": peak_h}
    for shape, (B, G, K, H) in {"zeisel": (512, 558, 15, 100),
                                "movielens": (512, 300, 50, 300)}.items():
        p = [torch.randn(B, K), torch.randn(G, K), torch.randn(H, K) * 0.3,
             torch.randn(H, H) * 0.1, torch.zeros(H), torch.randn(G, H) * 0.1, torch.zeros(G)]
        p = [t.requires_grad_() for t in p]

        def fb(p=p):
            out = sparse_decoder_forward(*p)
            out.backward(torch.ones_like(out))

        flops = 3 * 2 * B * G * H * (H + K)  # fwd + 2 backward matmuls, both layers
        for prec, tag in (("ieee", ""), ("bf16", "_bf16matmul")):
            torch.backends.mkldnn.matmul.fp32_precision = prec
            t = best(fb, 3)
            out[f"decoder_{shape}{tag}_s"] = t
            out[f"decoder_{shape}{tag}_gflops"] = flops / t / 1e9
        torch.backends.mkldnn.matmul.fp32_precision = "ieee"
    return out


def profile_zeisel(threads: int) -> str:
    import torch
    from torch.profiler import profile

    torch.set_num_threads(threads)
    sys.path.insert(0, str(HERE))
    from _impls import SHAPES, make_data, pyro_step

    x = make_data("zeisel")
    step = pyro_step("zeisel", x)
    g = torch.Generator().manual_seed(0)
    idx = [torch.randperm(x.shape[0], generator=g)[:SHAPES["zeisel"]["B"]] for _ in range(3)]
    step(idx[0])
    with profile() as prof:
        step(idx[1])
        step(idx[2])
    return prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=20)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--shapes", nargs="+", default=list(STEPS))
    ap.add_argument("--impls", nargs="+",
                    default=["pyro", "plain", "authors", "authors-full", "naive", "vae",
                             "pyro-bf16", "authors-bf16"])
    ap.add_argument("--name", default="speed",
                    help="results/NAME.{md,json} and NAME_profile.txt (default: speed)")
    ap.add_argument("--_child", nargs=3, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args._child:
        shape, impl, steps = args._child
        print(json.dumps(measure(shape, impl, int(steps), args.threads)))
        return
    t0 = time.time()
    rows = []
    env = dict(os.environ, OMP_NUM_THREADS=str(args.threads), MKL_NUM_THREADS=str(args.threads))
    for shape in args.shapes:
        impls = [i for i in args.impls if not (shape == "movielens" and i == "naive")]
        for r in range(args.rounds):
            for impl in impls:
                cmd = [sys.executable, __file__, "--threads", str(args.threads), "--_child",
                       shape, impl, str(STEPS[shape])]
                res = subprocess.run(cmd, capture_output=True, text=True, env=env)
                if res.returncode != 0:
                    print(res.stderr[-2000:], file=sys.stderr)
                    raise SystemExit(f"{shape}/{impl} failed")
                row = json.loads(res.stdout.strip().splitlines()[-1])
                row["round"] = r
                rows.append(row)
                print(f"{shape:10s} {impl:8s} round {r}: {row['step_s']:.4f} s/step, "
                      f"peak {row['peak_rss_mb']:.0f} MB", file=sys.stderr)
    rates = decoder_rate(args.threads)
    prof = profile_zeisel(args.threads)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"{args.name}.json").write_text(json.dumps(dict(rows=rows, rates=rates), indent=1))
    (RESULTS / f"{args.name}_profile.txt").write_text(
        "torch.profiler, 2 SVI steps of pyro_sparse at the Zeisel-like shape, "
        f"{args.threads} thread(s)\n\n" + prof)
    (RESULTS / f"{args.name}.md").write_text(report(rows, rates, args, time.time() - t0))
    print(report(rows, rates, args, time.time() - t0))


def _cpu_model() -> str:
    """The CPU's model name from /proc/cpuinfo (the platform module does not give it)."""
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def report(rows, rates, args, elapsed) -> str:
    import math

    from _impls import SHAPES

    def med(shape, impl, key):
        v = [r[key] for r in rows if r["shape"] == shape and r["impl"] == impl]
        return statistics.median(v) if v else math.nan

    def ratio(a, b):
        # an implementation left out of the run has no ratio: "-", not "nanx"
        r = a / b
        return "-" if math.isnan(r) else f"{r:.2f}x"

    lines = ["# Speed and memory of one training step\n",
             f"Measured {time.strftime('%Y-%m-%d')} on {platform.node()} "
             f"({platform.machine()}, {os.cpu_count()} cores), {args.threads} torch thread(s), "
             f"median of {args.rounds} interleaved rounds, each implementation in a fresh "
             f"process (run took {elapsed:.0f} s).",
             f"Command: `.venv/bin/python benchmarks/speed.py --rounds {args.rounds} "
             f"--threads {args.threads} --shapes {' '.join(args.shapes)} "
             f"--impls {' '.join(args.impls)} --name {args.name}`\n",
             f"CPU: {_cpu_model()}.\n",
             "Seconds per epoch = seconds per step x steps per epoch (ceil(N / batch)). "
             "Peak memory is the process's peak RSS (includes ~the data and Python/torch, "
             "~300-400 MB).\n",
             "`-bf16` rows run PyTorch's fp32 matmuls on bf16 inputs with fp32 accumulation "
             "(`torch.backends.mkldnn.matmul.fp32_precision = \"bf16\"`); the last column "
             "compares each row with the authors-style loop at the same matmul precision.\n",
             "| shape | implementation | s/step | s/epoch | peak RSS MB | vs plain PyTorch | "
             "speed-up vs authors-style loop | speed-up vs authors-full | "
             "speed-up vs authors-style loop, same matmul precision |",
             "|---|---|---|---|---|---|---|---|---|"]
    for shape in args.shapes:
        s = SHAPES[shape]
        spe = math.ceil(s["N"] / s["B"])
        for impl in args.impls:
            st = med(shape, impl, "step_s")
            same = "authors-bf16" if impl.endswith("-bf16") else "authors"
            if math.isnan(st):
                continue
            lines.append(
                f"| {shape} | {impl} | {st:.4f} | {st * spe:.3f} | "
                f"{med(shape, impl, 'peak_rss_mb'):.0f} | "
                f"{ratio(st, med(shape, 'plain', 'step_s'))} | "
                f"{ratio(med(shape, 'authors', 'step_s'), st)} | "
                f"{ratio(med(shape, 'authors-full', 'step_s'), st)} | "
                f"{ratio(med(shape, same, 'step_s'), st)} |")
    lines += ["", "Matmul rate and the fused decoder (forward + backward, FLOPs counted as "
              "3 x 2 B G H (H + K)):", ""]
    for k, v in rates.items():
        lines.append(f"- {k}: {v:.3f}")
    lines.append("")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
