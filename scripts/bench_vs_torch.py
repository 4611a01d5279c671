#!/usr/bin/env python3
"""Side-by-side training throughput: `jumpscope bench` vs the PyTorch eager reference
(reference/jumprelu_torch.py bench, or another with --reference), alternating runs of each so
that both see the same machine load, and printing the medians per size as a Markdown table.

With --l0 N both sides start θ at the (1 - N/d_sae) quantile of each feature's pre-activations on
the first batch, so that about N features fire per token (a trained SAE's sparsity); without it
θ = 1e-3, where about half the features fire. The table also shows the L0 each side reached and
jumpscope's `limit_ratio` (a step's time over the dense encoder product's alone).

The floor: in the same run, between the training runs, the encoder's product `x · W_enc`
([batch, d_in] · [d_in, d_sae], f32) is timed with PyTorch (MKL or whatever BLAS the wheel has)
and with NumPy (its OpenBLAS), and `floor_ms` is the faster of the two: the best sgemm of that
shape on the box that is not ours. jumpscope's encoder product and step are shown as multiples
of it, so that a number says how close to the machine it is, whichever CPU family it ran on.

Needs torch (`pip install torch==2.9.0`, or PYTHONPATH=~/.cache/jumpscope/torch-2.9.0) and a
release build (`cargo build --release`; for `--device tch-cpu`, `scripts/dev.sh build-tch`).
Usage: python3 scripts/bench_vs_torch.py [--repeats 3] [--l0 64] [--device cpu|tch-cpu] [--sizes 512x4096x4096,768x16384x4096]
"""
import argparse, json, os, platform, statistics, subprocess, sys

# d_in, d_sae, batch, timed steps
SIZES = {"512x4096x4096": (512, 4096, 4096, 5), "768x16384x4096": (768, 16384, 4096, 3),
         "256x2048x1024": (256, 2048, 1024, 20)}


def cpu_line():
    info = open("/proc/cpuinfo").read() if os.path.exists("/proc/cpuinfo") else ""
    field = lambda k: next((l.split(":", 1)[1].strip() for l in info.splitlines() if l.startswith(k)), "")
    flags = field("flags").split()
    ext = [f for f in ("avx2", "fma", "f16c", "avx512f", "avx512bw", "avx512_bf16", "avx_vnni", "amx_tile") if f in flags]
    return f"{field('model name') or platform.processor()}, {os.cpu_count()} cores, {' '.join(ext) or 'no AVX2'}"


def product_ms(d, m, b, reps=5):
    """Median milliseconds of [b, d] · [d, m] in f32 with PyTorch and with NumPy."""
    import numpy as np, time, torch
    out = {}
    a, w = np.random.default_rng(0).standard_normal((b, d), np.float32), np.random.default_rng(1).standard_normal((d, m), np.float32)
    for name, x, y in (("torch", torch.from_numpy(a), torch.from_numpy(w)), ("numpy", a, w)):
        x @ y
        ts = []
        for _ in range(reps):
            t = time.perf_counter()
            x @ y
            ts.append((time.perf_counter() - t) * 1e3)
        out[name] = statistics.median(ts)
    return out


def run(cmd):
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def main():
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--l0", type=float, default=0.0, help="about this many active features per token (0: the dense start, θ = 1e-3)")
    p.add_argument("--sizes", default="512x4096x4096,768x16384x4096", help=f"comma-separated, of {', '.join(SIZES)}")
    p.add_argument("--bin", default=os.path.join(os.environ.get("CARGO_TARGET_DIR", os.path.join(root, "target")), "release", "jumpscope"))
    p.add_argument("--device", default="cpu", help="jumpscope's device: cpu (flex) or tch-cpu (LibTorch)")
    p.add_argument("--reference", default=os.path.join(root, "reference", "jumprelu_torch.py"),
                   help="the PyTorch reference whose `bench` mode is the peer (default: the repository's own)")
    a = p.parse_args()
    try:
        import torch  # noqa: F401
    except ImportError:
        sys.exit("torch is not installed: pip install torch==2.9.0 (or PYTHONPATH=~/.cache/jumpscope/torch-2.9.0)")
    l0 = ["--l0", str(a.l0)] if a.l0 else []
    isa = f" JUMPSCOPE_ISA={os.environ['JUMPSCOPE_ISA']}" if os.environ.get("JUMPSCOPE_ISA") else ""
    print(f"machine: {cpu_line()}; {a.repeats} alternating runs each, median shown; "
          f"{'--l0 ' + str(a.l0) if a.l0 else 'dense start (theta = 1e-3)'}{isa}\n")
    print(f"| d_in | d_sae | batch | PyTorch eager (tokens/s) | L0 | jumpscope {a.device} (tokens/s) | L0 | ratio "
          "| floor_ms | encoder_ms | encoder / floor | step_ms | step / floor | limit_ratio | jumpscope ISA |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|")
    for name in a.sizes.split(","):
        d, m, b, steps = SIZES[name]
        sizes = ["--d-in", str(d), "--d-sae", str(m), "--batch", str(b), "--steps", str(steps)]
        theirs, ours, products = [], [], []
        for _ in range(a.repeats):
            theirs.append(run([sys.executable, a.reference, "bench"] + sizes + l0))
            products.append(product_ms(d, m, b))
            ours.append(run([a.bin, "bench"] + sizes + l0 + ["--device", a.device, "--json"]))
        med = lambda runs, k: statistics.median(r[k] for r in runs)
        t, o = med(theirs, "tokens_per_s"), med(ours, "tokens_per_s")
        pt, pn = med(products, "torch"), med(products, "numpy")
        floor, src = (pt, "PyTorch") if pt <= pn else (pn, "NumPy")
        enc, step = med(ours, "encoder_ms"), med(ours, "ms_per_step")
        isa = f"{ours[0].get('isa_products', '?')} products, {ours[0].get('isa_kernels', '?')} kernels"
        print(f"| {d} | {m} | {b} | {t:.0f} | {med(theirs, 'l0'):.1f} | {o:.0f} | {med(ours, 'l0'):.1f} | {o / t:.2f}x | "
              f"{floor:.1f} ({src}; PyTorch {pt:.1f}, NumPy {pn:.1f}) | {enc:.1f} | {enc / floor:.2f} | {step:.1f} | "
              f"{step / floor:.2f} | {med(ours, 'limit_ratio'):.2f} | {isa} |", flush=True)


if __name__ == "__main__":
    main()
