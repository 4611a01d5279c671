#!/usr/bin/env python3
"""Make sample_data/tinylm/: a small causal language model of our own, for the model-in-the-loop
tests and demos (`jumpscope lm-eval`, `[lm_eval]`), so that nothing is downloaded at run time.

The text is generated here from a seeded grammar of a small world: sentences with subject-verb
agreement ("the red cat sits on the mat ." / "the cats sit ..."), small sums ("two plus three is
five ."), and lists that are repeated later in the same document (which a two-layer model learns
to copy, with induction heads). Documents are separated by <|endoftext|>.

The tokenizer is word level (every word and punctuation mark of the grammar, plus <|endoftext|>
and <unk>), built with the `tokenizers` library and saved as a transformers fast tokenizer. The
model is a GPT-2 (transformers' GPT2LMHeadModel) with 2 layers, d_model 128, 4 heads and 128
positions, trained with AdamW on sequences of 128 tokens; its loss curve goes into
train_loss.csv, and held-out text (other seeds) into heldout.txt and heldout_ids.npy
[64, 64] (int32, each window starting with <|endoftext|>, as harvest.py cuts them).

How to run it (CI does not; the output is committed; about 6 minutes on 2 CPU cores):
    scripts/dev.sh companions      # a venv with torch and transformers
    ~/.cache/jumpscope/py-companions-*/bin/python sample_data/make_tinylm.py
"""
import csv
import json
import math
import os
import random
import sys
import time

import numpy as np
import torch
import transformers
from tokenizers import Tokenizer, models, pre_tokenizers

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "tinylm")
EOT = "<|endoftext|>"
SEQ_LEN, BATCH, STEPS, LR = 128, 32, 1500, 3e-3

NUMBERS = "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen sixteen seventeen eighteen".split()
ADJ = "red blue green small big old young happy sad quiet loud brown white black".split()
# (singular, plural)
NOUNS = [(n, n + "s") for n in "cat dog bird fox horse cow frog duck goat king queen girl boy farmer teacher".split()]
THINGS = "mat log tree river hill house road box table chair garden field bridge wall boat".split()
# (third person singular, plural)
VERBS = [(v + "s", v) for v in "sit run sleep walk jump stand wait play".split()]
TVERBS = [(v + "s", v) for v in "see like find follow watch help chase call".split()]
PREPS = "on under near behind over beside".split()
NAMES = "anna ben clara david emma felix grace hugo iris jack".split()
LIST_WORDS = sorted(set(ADJ + THINGS + NAMES + [n for n, _ in NOUNS]))
PUNCT = [".", ",", ":", "and", "then", "the", "a", "plus", "is", "list", "again", "because", "was", "were"]


def vocabulary():
    words = [EOT, "<unk>"] + PUNCT + NUMBERS + ADJ + THINGS + PREPS + NAMES + LIST_WORDS
    for pair in NOUNS + VERBS + TVERBS:
        words += list(pair)
    seen, out = set(), []
    for w in words:
        if w not in seen:
            seen.add(w)
            out.append(w)
    return out


def noun_phrase(rng):
    """(words, plural)."""
    plural = rng.random() < 0.4
    noun = rng.choice(NOUNS)[1 if plural else 0]
    words = ["the"]
    if rng.random() < 0.6:
        words.append(rng.choice(ADJ))
    return words + [noun], plural


def sentence(rng):
    kind = rng.random()
    if kind < 0.35:
        np_, plural = noun_phrase(rng)
        verb = rng.choice(VERBS)[1 if plural else 0]
        s = np_ + [verb, rng.choice(PREPS), "the", rng.choice(THINGS)]
        if rng.random() < 0.3:
            np2, plural2 = noun_phrase(rng)
            s += ["because"] + np2 + ["was" if not plural2 else "were", rng.choice(ADJ)]
        return s + ["."]
    if kind < 0.6:
        np_, plural = noun_phrase(rng)
        obj, _ = noun_phrase(rng)
        return np_ + [rng.choice(TVERBS)[1 if plural else 0]] + obj + ["."]
    if kind < 0.75:
        a, b = rng.randrange(0, 10), rng.randrange(0, 9)
        return [NUMBERS[a], "plus", NUMBERS[b], "is", NUMBERS[a + b], "."]
    if kind < 0.85:
        name = rng.choice(NAMES)
        return [name, rng.choice(TVERBS)[0]] + noun_phrase(rng)[0] + ["then", name, rng.choice(VERBS)[0], "."]
    items = [rng.choice(LIST_WORDS) for _ in range(rng.randrange(3, 8))]
    return ["list", ":"] + items + [".", "again", ":"] + items + ["."]


def document(rng):
    words = []
    for _ in range(rng.randrange(3, 12)):
        words += sentence(rng)
    return " ".join(words)


def make_tokenizer(vocab):
    tok = Tokenizer(models.WordLevel({w: i for i, w in enumerate(vocab)}, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    fast = transformers.PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token=EOT, eos_token=EOT, unk_token="<unk>", model_max_length=SEQ_LEN)
    return fast


def stream(tok, rng, n_tokens):
    """Token ids of documents joined with <|endoftext|> until n_tokens."""
    ids = []
    eot = tok.convert_tokens_to_ids(EOT)
    while len(ids) < n_tokens:
        docs = [document(rng) for _ in range(256)]
        for enc in tok(docs, add_special_tokens=False)["input_ids"]:
            ids += enc + [eot]
    return np.asarray(ids[:n_tokens], dtype=np.int64)


def main():
    torch.manual_seed(0)
    torch.set_num_threads(os.cpu_count() or 1)
    os.makedirs(OUT, exist_ok=True)
    vocab = vocabulary()
    tok = make_tokenizer(vocab)
    eot = tok.convert_tokens_to_ids(EOT)
    cfg = transformers.GPT2Config(
        vocab_size=len(vocab), n_positions=SEQ_LEN, n_embd=128, n_layer=2, n_head=4,
        bos_token_id=eot, eos_token_id=eot, resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0)
    model = transformers.GPT2LMHeadModel(cfg)
    train = stream(tok, random.Random(1), STEPS * BATCH * SEQ_LEN // 4 + SEQ_LEN + 1)
    valid = torch.from_numpy(stream(tok, random.Random(2), 32 * SEQ_LEN)).view(32, SEQ_LEN)
    opt = torch.optim.AdamW(model.parameters(), lr=LR, weight_decay=0.01, betas=(0.9, 0.95))
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min(1.0, (s + 1) / 100) * 0.5 * (1 + math.cos(math.pi * min(s, STEPS) / STEPS)))
    gen = np.random.default_rng(0)
    rows = []
    start = time.time()
    for step in range(1, STEPS + 1):
        starts = gen.integers(0, len(train) - SEQ_LEN, size=BATCH)
        batch = torch.from_numpy(np.stack([train[s:s + SEQ_LEN] for s in starts]))
        model.train()
        loss = model(input_ids=batch, labels=batch).loss
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        if step % 50 == 0 or step == 1:
            model.eval()
            with torch.no_grad():
                vloss = model(input_ids=valid, labels=valid).loss.item()
            rows.append((step, step * BATCH * SEQ_LEN, round(loss.item(), 4), round(vloss, 4)))
            print(f"step {step:5d}  train {loss.item():.4f}  valid {vloss:.4f}  {time.time() - start:.0f} s",
                  file=sys.stderr)
    model.eval()
    model.save_pretrained(OUT, safe_serialization=True)
    tok.save_pretrained(OUT)
    with open(os.path.join(OUT, "train_loss.csv"), "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["step", "tokens", "train_loss", "valid_loss"])
        w.writerows(rows)
    held = random.Random(3)
    with open(os.path.join(OUT, "heldout.txt"), "w") as f:
        for _ in range(400):
            f.write(document(held) + "\n")
    ids = stream(tok, random.Random(4), 64 * 63).reshape(64, 63)
    ids = np.concatenate([np.full((64, 1), eot), ids], axis=1).astype(np.int32)
    np.save(os.path.join(OUT, "heldout_ids.npy"), ids)
    with open(os.path.join(OUT, "README.md"), "w") as f:
        f.write(f"# tinylm\n\nA 2-layer GPT-2 (d_model 128, 4 heads, {len(vocab)} word-level tokens) trained by "
                f"`sample_data/make_tinylm.py` for {STEPS} steps of {BATCH} x {SEQ_LEN} tokens on generated "
                f"text; final validation loss {rows[-1][3]} nats/token. See docs/lm-eval.md.\n")
    print(json.dumps({"valid_loss": rows[-1][3], "secs": round(time.time() - start)}), file=sys.stderr)


if __name__ == "__main__":
    main()
