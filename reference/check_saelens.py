#!/usr/bin/env python3
"""Check jumpscope's baselines, transcoders and exports against SAELens (`pip install sae-lens`;
nothing else here needs it; CI runs `ci` through `scripts/dev.sh test-saelens`).

  reference    our PyTorch reference (baselines_torch.py) against SAELens's own training classes
               (TopKTrainingSAE, BatchTopKTrainingSAE, StandardTrainingSAE, and
               MatryoshkaBatchTopKTrainingSAE with nested widths) on the same weights
               and batch, in float64: feature activations, the training loss, and every gradient.
               SAELens options that have no counterpart here are set to the paper's form:
               rescale_acts_by_decoder_norm = False (our decoder rows are unit norm anyway), and
               the auxiliary loss off (see the README: SAELens's AuxK differs from the paper's).
  transcoders  our transcoder reference (transcoders_torch.py: relu and jumprelu, with and
               without the skip) against SAELens's inference classes on the same weights, in
               float64: the feature activations and the output
  ci --bin JUMPSCOPE
               both, on SAEs trained from the four sample recipes (shortened to 300 steps) on
               sample_data/synth.h5 and a Matryoshka BatchTopK one, and on transcoders and skip-transcoders (jumprelu, relu,
               batchtopk) trained from sample_data/transcoder.toml on the synthetic pair (run by
               `scripts/dev.sh test-saelens`, which CI calls)
  exports DIR... --store H5 [--target-store H5]
               each DIR is an SAE directory written by `jumpscope train`/`export`: it loads with
               SAE.load_from_disk as the architecture its cfg.json names, and SAELens's
               reconstruction (its `forward`) of the store's activations has the FVU `jumpscope
               eval --json` reports (pass it with --fvu, one per DIR) to 1e-3 relative; a
               transcoder's (cfg.json has d_out) against the target store's rows.

    PYTHONPATH=~/.cache/jumpscope/torch-2.9.0 python3 reference/check_saelens.py reference
"""
import argparse
import json
import os
import sys

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from baselines_torch import CLASSES  # noqa: E402
from jumprelu_torch import case_data  # noqa: E402


def saelens_model(arch, d_in, d_sae, k, l1, widths=None):
    from sae_lens.saes.batchtopk_sae import BatchTopKTrainingSAE, BatchTopKTrainingSAEConfig
    from sae_lens.saes.standard_sae import StandardTrainingSAE, StandardTrainingSAEConfig
    from sae_lens.saes.topk_sae import TopKTrainingSAE, TopKTrainingSAEConfig
    common = dict(d_in=d_in, d_sae=d_sae, dtype="float64", device="cpu", apply_b_dec_to_input=True)
    if widths:
        from sae_lens.saes.matryoshka_batchtopk_sae import (MatryoshkaBatchTopKTrainingSAE,
                                                            MatryoshkaBatchTopKTrainingSAEConfig)
        return MatryoshkaBatchTopKTrainingSAE(MatryoshkaBatchTopKTrainingSAEConfig(
            k=k, matryoshka_widths=widths, rescale_acts_by_decoder_norm=False, aux_loss_coefficient=0.0, **common))
    if arch == "topk":
        return TopKTrainingSAE(TopKTrainingSAEConfig(k=k, rescale_acts_by_decoder_norm=False, aux_loss_coefficient=0.0,
                                                     **common))
    if arch == "batchtopk":
        return BatchTopKTrainingSAE(BatchTopKTrainingSAEConfig(k=k, rescale_acts_by_decoder_norm=False,
                                                               aux_loss_coefficient=0.0, **common))
    return StandardTrainingSAE(StandardTrainingSAEConfig(l1_coefficient=l1, **common))


def cmd_reference(_args):
    from sae_lens import __version__
    from sae_lens.saes.sae import TrainStepInput
    worst_all = 0.0
    # Matryoshka BatchTopK: nested widths, the last d_sae
    widths = [8, 24, 64]
    for arch, seed, nested in (("topk", 5, None), ("batchtopk", 7, None), ("relu", 8, None),
                               ("batchtopk", 9, widths)):
        d_in, d_sae, batch, k, lam = 16, 64, 32, 6, 0.05
        params, batches = case_data(d_in, d_sae, batch, 1, seed, torch.float64)
        params["threshold"] = torch.zeros(d_sae, dtype=torch.float64)
        x = batches[0]
        cfg = {"pre_encoder_bias": True, "k": k, "matryoshka_widths": nested}
        ours = CLASSES[arch](params, cfg)
        loss, mse, sparsity, _ = ours.loss_parts(x, lam)
        loss.backward()
        theirs = saelens_model(arch, d_in, d_sae, k, lam, nested)
        with torch.no_grad():
            for name in ("W_enc", "b_enc", "W_dec", "b_dec"):
                getattr(theirs, name).copy_(params[name])
        out = theirs.training_forward_pass(TrainStepInput(sae_in=x, coefficients={"l1": lam} if arch == "relu" else {},
                                                          dead_neuron_mask=None, n_training_steps=0,
                                                          is_logging_step=False))
        out.loss.backward()
        f_ours = ours.encode(ours.pre_acts(x))
        diffs = {
            "feature acts": (f_ours - out.feature_acts).abs().max().item(),
            "loss": abs(loss.item() - out.loss.item()),
            "mse": abs(mse.item() - out.losses["mse_loss"].item()),
        }
        for w, inner in ours.inner_mse.items():
            diffs[f"mse_{w}"] = abs(inner.item() - out.losses[f"inner_mse_loss_{w}"].item())
        if nested and len(ours.inner_mse) != len(nested) - 1:
            diffs["inner widths"] = float("inf")
        for name in ("W_enc", "b_enc", "W_dec", "b_dec"):
            diffs[f"d{name}"] = (getattr(ours, name).grad - getattr(theirs, name).grad).abs().max().item()
        worst = max(diffs.values())
        worst_all = max(worst_all, worst)
        name = f"matryoshka {arch} {nested}" if nested else arch
        print(f"{name} vs sae-lens {__version__} {type(theirs).__name__}: "
              + ", ".join(f"{k} {v:.1e}" for k, v in diffs.items()))
    print(f"worst absolute difference {worst_all:.1e}")
    return worst_all < 1e-10


def cmd_transcoders(_args):
    from sae_lens import __version__
    from sae_lens.saes.transcoder import (JumpReLUSkipTranscoder, JumpReLUSkipTranscoderConfig,
                                          JumpReLUTranscoder, JumpReLUTranscoderConfig, SkipTranscoder,
                                          SkipTranscoderConfig, Transcoder, TranscoderConfig)
    from transcoders_torch import forward, random_params
    d_in, d_out, d_sae, batch = 12, 20, 48, 32
    worst_all = 0.0
    for (arch, skip, cls, cfg_cls), seed in zip(
            (("relu", False, Transcoder, TranscoderConfig),
             ("relu", True, SkipTranscoder, SkipTranscoderConfig),
             ("jumprelu", False, JumpReLUTranscoder, JumpReLUTranscoderConfig),
             ("jumprelu", True, JumpReLUSkipTranscoder, JumpReLUSkipTranscoderConfig)), range(11, 15)):
        p = random_params(d_in, d_out, d_sae, seed, skip=skip)
        x = torch.randn(batch, d_in, generator=torch.Generator().manual_seed(seed + 100), dtype=torch.float64)
        f, y_hat = forward(p, x, arch, skip)
        theirs = cls(cfg_cls(d_in=d_in, d_out=d_out, d_sae=d_sae, dtype="float64", device="cpu",
                             apply_b_dec_to_input=False)).eval()
        with torch.no_grad():
            for name in ("W_enc", "b_enc", "W_dec", "b_dec"):
                getattr(theirs, name).copy_(p[name])
            if arch == "jumprelu":
                theirs.threshold.copy_(p["threshold"])
            if skip:
                # SAELens keeps the skip as [d_out, d_in]
                theirs.W_skip.copy_(p["W_skip"].T)
            f_theirs = theirs.encode(x)
            y_theirs = theirs(x)
        fired = int((f > 0).sum())
        diffs = {"feature acts": (f - f_theirs).abs().max().item(), "output": (y_hat - y_theirs).abs().max().item()}
        worst = max(diffs.values())
        worst_all = max(worst_all, worst)
        print(f"{arch}{' skip' if skip else ''} transcoder vs sae-lens {__version__} {cls.__name__} "
              f"({fired} of {batch * d_sae} features fire): " + ", ".join(f"{k} {v:.1e}" for k, v in diffs.items()))
    print(f"worst absolute difference {worst_all:.1e}")
    return worst_all < 1e-10


def cmd_exports(args):
    import h5py
    import numpy as np
    from sae_lens import SAE, __version__
    if len(args.fvu) != len(args.dirs):
        sys.exit("give one --fvu (from `jumpscope eval DIR --store H5 --json`) per DIR")
    def rows(path):
        with h5py.File(path, "r") as f:
            a = f["activations"]
            return torch.from_numpy(np.asarray(a[:], dtype=np.float32).reshape(-1, a.shape[-1]))
    x = rows(args.store)
    y = rows(args.target_store) if getattr(args, "target_store", None) else None
    failed = 0
    for d, want in zip(args.dirs, args.fvu):
        with open(os.path.join(d, "cfg.json")) as fh:
            cfg = json.load(fh)
        named = cfg["architecture"]
        target = x
        if "d_out" in cfg:
            if y is None:
                sys.exit(f"{d}: a transcoder: give --target-store")
            target = y
        sae = SAE.load_from_disk(d, device="cpu")
        with torch.no_grad():
            recon = sae(x)
        resid = (recon - target).double()
        t = target.double()
        fvu = (resid.pow(2).sum() / (t - t.mean(0)).pow(2).sum()).item()
        rel = abs(fvu - want) / max(abs(want), 1e-12)
        ok = sae.cfg.architecture() == named and rel <= 1e-3
        failed += not ok
        print(f"{d}: sae-lens {__version__} loads {type(sae).__name__} (architecture {sae.cfg.architecture()!r}, "
              f"cfg.json {named!r}); FVU {fvu:.6f} vs jumpscope eval {want:.6f} (relative {rel:.1e}) "
              f"{'ok' if ok else 'MISMATCH'}")
    return not failed


def cmd_ci(args):
    import subprocess
    import tempfile
    root = os.path.dirname(HERE)
    store = os.path.join(root, "sample_data/synth.h5")
    with tempfile.TemporaryDirectory() as tmp:
        dirs, fvus, tdirs, tfvus = [], [], [], []
        # the four recipes, and a Matryoshka BatchTopK one (which exports as the plain class)
        for recipe, extra in (("demo", []), ("topk", []), ("batchtopk", []), ("relu", []),
                              ("batchtopk", ["--set", "sae.matryoshka_widths=[64, 256]"])):
            out = os.path.join(tmp, recipe + ("-matryoshka" if extra else ""))
            subprocess.run([args.bin, "train", "--config", f"sample_data/{recipe}.toml", "--out", out, "--headless",
                            "--set", "train.steps=300", "--set", "train.checkpoint_every=0"] + extra,
                           cwd=root, check=True, capture_output=True)
            ev = subprocess.run([args.bin, "eval", os.path.join(out, "sae"), "--store", store, "--json"],
                                cwd=root, check=True, capture_output=True, text=True)
            dirs.append(os.path.join(out, "sae"))
            fvus.append(json.loads(ev.stdout)["fvu"])
        # transcoders on the synthetic pair: every SAELens transcoder class
        target = os.path.join(root, "sample_data/synth_out.h5")
        for kind in ("transcoder", "skip-transcoder"):
            for arch in ("jumprelu", "relu", "batchtopk"):
                out = os.path.join(tmp, f"{kind}-{arch}")
                sets = ["--set", f"sae.kind=\"{kind}\"", "--set", "train.steps=300", "--set",
                        "train.checkpoint_every=0"]
                subprocess.run([args.bin, "train", "--config", f"sample_data/{arch_recipe(arch)}.toml", "--out", out,
                                "--headless", "--set", f"data.target_stores=[\"{target}\"]"] + sets,
                               cwd=root, check=True, capture_output=True)
                ev = subprocess.run([args.bin, "eval", os.path.join(out, "sae"), "--store", store,
                                     "--target-store", target, "--json"],
                                    cwd=root, check=True, capture_output=True, text=True)
                tdirs.append(os.path.join(out, "sae"))
                tfvus.append(json.loads(ev.stdout)["fvu"])
        # every check runs, so that one failure does not hide another
        ok = cmd_reference(args)
        ok = cmd_transcoders(args) and ok
        ok = cmd_exports(argparse.Namespace(dirs=dirs, fvu=fvus, store=store)) and ok
        return cmd_exports(argparse.Namespace(dirs=tdirs, fvu=tfvus, store=store, target_store=target)) and ok


def arch_recipe(arch):
    """The sample recipe a transcoder of `arch` is trained from (its kind and target set on top)."""
    return {"jumprelu": "transcoder", "relu": "relu", "batchtopk": "batchtopk"}[arch]


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    sub.add_parser("reference")
    sub.add_parser("transcoders")
    e = sub.add_parser("exports")
    e.add_argument("dirs", nargs="+")
    e.add_argument("--store", required=True)
    e.add_argument("--target-store")
    e.add_argument("--fvu", type=float, action="append", default=[])
    c = sub.add_parser("ci")
    c.add_argument("--bin", required=True)
    args = p.parse_args()
    ok = {"reference": cmd_reference, "transcoders": cmd_transcoders, "exports": cmd_exports,
          "ci": cmd_ci}[args.cmd](args)
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
