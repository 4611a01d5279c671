#!/usr/bin/env python3
"""`jumpscope lm-eval` against SAELens's own get_recons_loss, on the repository's causal LM
(sample_data/tinylm) and its held-out token ids (run by `scripts/dev.sh test-saelens`, which CI
calls):

  - two SAEs are trained on sample_data/tinylm_l0_resid.h5 with the binary (JumpReLU, TopK);
  - SAELens 6.54 loads each exported SAE (SAE.load_from_disk), and its evals.get_recons_loss runs
    on a TransformerLens HookedTransformer built from the same Hugging Face GPT-2 (weights
    converted by TransformerLens, with no folding or centring, so that the hooked activations are
    the model's own);
  - CE with the SAE, without it, with the site zero-ablated, and KL(clean || spliced) agree with
    `jumpscope lm-eval --json` to 1e-4 relative, over the same positions: cross-entropy over the
    predicted positions, KL over all positions (docs/lm-eval.md).

    python3 reference/check_lm_eval_saelens.py --bin target/release/jumpscope
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile

import numpy as np
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
MODEL = os.path.join(ROOT, "sample_data", "tinylm")
IDS = os.path.join(MODEL, "heldout_ids.npy")
LAYER, SITE = 0, "resid_post"
TOL = 1e-4
STORE = os.path.join(ROOT, "sample_data", "tinylm_l0_resid.h5")
# a short run of sample_data/tinylm.toml's recipe, without the model in the loop (this check runs
# lm-eval itself)
RECIPE = """[data]
stores = ["{store}"]
batch_size = 512
[sae]
expansion_factor = 4
{sae}[train]
steps = 200
lr = 2e-3
lr_warmup_steps = 50
log_every = 50
[run]
out = "{out}"
"""


def hooked_transformer():
    """The Hugging Face GPT-2 as a HookedTransformer, without processing."""
    import transformers
    from transformer_lens import HookedTransformer, HookedTransformerConfig
    from transformer_lens.pretrained.weight_conversions.gpt2 import convert_gpt2_weights
    hf = transformers.GPT2LMHeadModel.from_pretrained(MODEL).eval()
    c = hf.config
    cfg = HookedTransformerConfig(
        n_layers=c.n_layer, d_model=c.n_embd, n_ctx=c.n_positions, d_head=c.n_embd // c.n_head,
        n_heads=c.n_head, d_mlp=4 * c.n_embd, d_vocab=c.vocab_size, act_fn=c.activation_function,
        normalization_type="LN", eps=c.layer_norm_epsilon, positional_embedding_type="standard",
        original_architecture="GPT2LMHeadModel", default_prepend_bos=False, device="cpu")
    model = HookedTransformer(cfg)
    model.load_and_process_state_dict(convert_gpt2_weights(hf, cfg), fold_ln=False, center_writing_weights=False,
                                      center_unembed=False, fold_value_biases=False)
    return model.eval()


def saelens_numbers(sae_dir, model, ids):
    from sae_lens import SAE
    from sae_lens.evals import get_recons_loss
    from sae_lens.training.activation_scaler import ActivationScaler
    sae = SAE.load_from_disk(sae_dir, device="cpu")
    sums = {"ce_spliced": 0.0, "ce_clean": 0.0, "ce_ablated": 0.0, "kl": 0.0}
    n_pred = n_pos = 0
    for b in range(0, len(ids), 16):
        tokens = torch.from_numpy(ids[b:b + 16].astype(np.int64))
        with torch.no_grad():
            m = get_recons_loss(sae, model, ActivationScaler(), tokens, compute_kl=True, compute_ce_loss=True,
                                hook_name=f"blocks.{LAYER}.hook_{SITE}")
        sums["ce_spliced"] += m["ce_loss_with_sae"].double().sum().item()
        sums["ce_clean"] += m["ce_loss_without_sae"].double().sum().item()
        sums["ce_ablated"] += m["ce_loss_with_ablation"].double().sum().item()
        sums["kl"] += m["kl_div_with_sae"].double().sum().item()
        n_pred += m["ce_loss_with_sae"].numel()
        n_pos += m["kl_div_with_sae"].numel()
    out = {k: v / (n_pos if k == "kl" else n_pred) for k, v in sums.items()}
    out["positions"], out["predicted"] = n_pos, n_pred
    return out


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--bin", required=True)
    args = p.parse_args()
    from sae_lens import __version__
    failures = []
    ids = np.load(IDS)
    model = hooked_transformer()
    with tempfile.TemporaryDirectory() as tmp:
        runs = []
        for arch, sae in [("jumprelu", 'threshold_init = 0.05\nbandwidth = 0.05\n'), ("topk", 'architecture = "topk"\nk = 8\n')]:
            run = os.path.join(tmp, arch)
            cfg = os.path.join(tmp, f"{arch}.toml")
            with open(cfg, "w") as f:
                f.write(RECIPE.format(store=STORE, sae=sae, out=run))
            done = subprocess.run([args.bin, "train", "--config", cfg, "--headless"], cwd=ROOT, capture_output=True,
                                  text=True)
            if done.returncode != 0:
                print(done.stderr)
                sys.exit(f"training the {arch} SAE failed")
            runs.append((arch, os.path.join(run, "sae")))
        done = subprocess.run([args.bin, "lm-eval", *[r for _, r in runs], "--model", MODEL, "--layer", str(LAYER),
                               "--site", SITE, "--token-ids", IDS, "--json", "--python", sys.executable],
                              cwd=ROOT, capture_output=True, text=True)
        if done.returncode != 0:
            print(done.stderr)
            sys.exit("jumpscope lm-eval failed")
        ours = json.loads(done.stdout)
        for (arch, sae_dir), mine in zip(runs, ours):
            theirs = saelens_numbers(sae_dir, model, ids)
            if mine["tokens"] != theirs["positions"]:
                failures.append(f"{arch}: {mine['tokens']} positions, SAELens {theirs['positions']}")
            for key in ("ce_clean", "ce_spliced", "ce_ablated", "kl"):
                rel = abs(mine[key] - theirs[key]) / max(abs(theirs[key]), 1e-12)
                ok = rel <= TOL
                print(f"{'ok  ' if ok else 'FAIL'} {arch:8s} {key:10s} jumpscope {mine[key]:.7f}  "
                      f"SAELens {__version__} {theirs[key]:.7f}  rel {rel:.1e}")
                if not ok:
                    failures.append(f"{arch} {key}")
    if failures:
        sys.exit(f"{len(failures)} disagreement(s) with SAELens: {', '.join(failures)}")
    print(f"lm-eval agrees with SAELens {__version__} get_recons_loss to {TOL:g} relative")


if __name__ == "__main__":
    main()
