#!/usr/bin/env python3
"""Training throughput under the live screen vs headless: the same run (config, seed, steps)
trained alternately with `--headless` and under the screen in a real terminal (a tmux window of
the given size), printing the median tokens/s of each and their ratio as a Markdown table.

Throughput is taken from the run's own metrics.jsonl: tokens trained between the first and the
last metrics report over the time between them, so start-up (scale estimate, file opening) is
left out of both.

Needs tmux and a release build (`cargo build --release`).
Usage: python3 scripts/bench_screen.py [--repeats 3] [--config sample_data/demo.toml]
       [--steps 3000] [--size 200x60] [--bin target/release/jumpscope]
"""
import argparse, json, os, platform, shutil, statistics, subprocess, sys, tempfile, time


def throughput(run_dir):
    recs = []
    with open(os.path.join(run_dir, "metrics.jsonl")) as f:
        for line in f:
            r = json.loads(line)
            if r.get("type") == "metrics":
                recs.append(r)
    if len(recs) < 3:
        sys.exit(f"{run_dir}: only {len(recs)} metrics reports; use more --steps")
    a, b = recs[0], recs[-1]
    return (b["tokens"] - a["tokens"]) / (b["elapsed_s"] - a["elapsed_s"])


def train_args(a, out):
    return [a.bin, "train", "--config", a.config, "--out", out, "--set", f"train.steps={a.steps}",
            "--set", "train.checkpoint_every=0"]


def headless(a, out):
    subprocess.run(train_args(a, out) + ["--headless"], check=True, stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL)
    return throughput(out)


def screen(a, out):
    w, h = a.size.split("x")
    sock = f"jumpscope-bench-{os.getpid()}"
    cmd = " ".join(f"'{x}'" for x in train_args(a, out)) + f"; tmux -L {sock} wait-for -S done"
    subprocess.run(["tmux", "-L", sock, "-f", "/dev/null", "new-session", "-d", "-x", w, "-y", h,
                    "sh", "-c", cmd + "; sleep 5"], check=True)
    try:
        # the screen stays up after the last step until q
        log = os.path.join(out, "metrics.jsonl")
        deadline = time.time() + 3600
        while not (os.path.exists(log) and '"type":"finish"' in open(log).read()):
            if time.time() > deadline:
                sys.exit("the run under the screen did not finish within an hour")
            time.sleep(0.5)
        subprocess.run(["tmux", "-L", sock, "send-keys", "q"], check=True)
        subprocess.run(["tmux", "-L", sock, "wait-for", "done"], check=True, timeout=60)
    finally:
        subprocess.run(["tmux", "-L", sock, "kill-server"], stderr=subprocess.DEVNULL)
    return throughput(out)


def main():
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--config", default=os.path.join(root, "sample_data", "demo.toml"))
    p.add_argument("--steps", type=int, default=3000)
    p.add_argument("--size", default="200x60", help="terminal size for the screen runs")
    p.add_argument("--bin", default=os.path.join(os.environ.get("CARGO_TARGET_DIR", os.path.join(root, "target")), "release", "jumpscope"))
    a = p.parse_args()
    if not shutil.which("tmux"):
        sys.exit("tmux is needed (the screen runs in a tmux window)")
    os.chdir(root)  # the demo config's paths are relative to the repository
    runs = {"headless": [], "screen": []}
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(a.repeats):
            pair = [("headless", headless), ("screen", screen)]
            # ABBA order, so that neither side always runs first (or on a warmer machine)
            for kind, fn in (pair if i % 2 == 0 else pair[::-1]):
                out = os.path.join(tmp, f"{kind}-{i}")
                t0 = time.time()
                tps = fn(a, out)
                runs[kind].append(tps)
                print(f"  {kind:8} run {i + 1}: {tps:,.0f} tokens/s ({time.time() - t0:.0f} s)", file=sys.stderr)
    h, s = statistics.median(runs["headless"]), statistics.median(runs["screen"])
    print(f"\n{platform.processor() or platform.machine()}, {os.cpu_count()} cores; "
          f"{os.path.relpath(a.config, root)}, {a.steps} steps, screen {a.size}, median of {a.repeats}\n")
    print("| run | tokens/s |")
    print("|---|---:|")
    print(f"| headless | {h:,.0f} |")
    print(f"| under the screen | {s:,.0f} |")
    print(f"| ratio | {s / h:.1%} |")


if __name__ == "__main__":
    main()
