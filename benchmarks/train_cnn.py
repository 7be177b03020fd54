"""Train the modern LeNet-5 and a small ResNet (batch norm + augmentation) on Fashion-MNIST and
record, per epoch, the test accuracy and the wall time (the accuracies aimed at: LeNet ≥ 91.5%,
a ResNet with BN + augmentation ≥ 94%).

* ``lenet``: ``models.lenet5("modern", dropout=--dropout)``, Adam, learning rate ``--lr`` (1e-3)
  cosine-decayed to 0 over the run, batch 128, inputs standardised; ``--augment`` adds the
  augmentation below (without it, none).
* ``resnet``: ``models.resnet(widths=..., blocks=...)`` (batch norm in every block), AdamW
  (weight decay 5e-4), one warm-up epoch to 3e-3 then cosine decay, batch 128, augmentation each
  epoch (:func:`jaxnets.augment.augment`): random shifts by up to ``--shift`` (2) pixels, the
  background moved in, and random horizontal flips.

Training is :func:`jaxnets.fit` (scan engine, ``augment=`` for the augmentation). The test set is
evaluated after every epoch (fit's validation data) and only reported (no model selection on it);
the accuracy to quote is the last epoch's. With ``--checkpoint-dir`` every epoch is saved there and
an interrupted run picks up where it stopped. Output: one JSON object per epoch on stdout and in
``--out`` (JSONL), then a summary line ``<model>: <acc> after <epochs> epochs, <minutes> min``.

Run: ``.venv/bin/python benchmarks/train_cnn.py lenet --epochs 30`` (~3 min on 2 cores with the
Toeplitz convolutions), ``... resnet --epochs 30`` (1 h on 2 cores; ``--widths 32,64,128`` about
2.2 h), ``--quick`` for a smoke run on 2,048 examples.
"""

from __future__ import annotations

import argparse
import functools
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import optax  # noqa: E402

from jaxnets import fit, models  # noqa: E402
from jaxnets.augment import augment  # noqa: E402
from jaxnets.data import load_dataset  # noqa: E402

BATCH = 128


def build(name: str, steps_per_epoch: int, epochs: int, args):
    if name == "lenet":
        model = models.lenet5("modern", dropout=args.dropout)
        lr = optax.cosine_decay_schedule(args.lr, steps_per_epoch * epochs)
        return model, optax.adam(lr), args.augment
    widths = tuple(int(v) for v in args.widths.split(","))
    blocks = tuple(int(v) for v in args.blocks.split(","))
    model = models.resnet(widths=widths, blocks=blocks)
    total = steps_per_epoch * epochs
    lr = optax.warmup_cosine_decay_schedule(0.0, 3e-3, min(steps_per_epoch, total // 5), total)
    return model, optax.adamw(lr, weight_decay=5e-4), True


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("model", choices=("lenet", "resnet"))
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--widths", default="16,32,64", help="resnet stage widths")
    parser.add_argument("--blocks", default="1,1,1", help="resnet blocks per stage")
    parser.add_argument("--lr", type=float, default=1e-3, help="lenet: peak learning rate")
    parser.add_argument("--dropout", type=float, default=0.0, help="lenet: dropout after each hidden dense layer")
    parser.add_argument("--augment", action="store_true", help="lenet: random shifts (±--shift px) and flips each epoch")
    parser.add_argument("--shift", type=int, default=2, help="augmentation: largest shift in pixels (0: flips only)")
    parser.add_argument("--quick", action="store_true", help="smoke run: 2,048 examples, 1 epoch")
    parser.add_argument("--out", default=None, help="append one JSON line per epoch here")
    parser.add_argument("--checkpoint-dir", default=None, help="save every epoch here; resume a run found there")
    args = parser.parse_args(argv)
    data = load_dataset("fashion-mnist")
    x, y, x_test, y_test = data.x_train, data.y_train, data.x_test, data.y_test
    epochs = args.epochs
    if args.quick:
        x, y, x_test, y_test, epochs = x[:2048], y[:2048], x_test[:1000], y_test[:1000], 1
    mean, std = float(x.mean()), float(x.std())
    x, x_test = jnp.asarray((x - mean) / std), jnp.asarray((x_test - mean) / std)
    y, y_test = jnp.asarray(y), jnp.asarray(y_test)
    background = (0.0 - mean) / std  # the value of a black pixel after standardisation
    steps = x.shape[0] // BATCH
    model, optimizer, augmented = build(args.model, steps, epochs, args)
    key = jax.random.PRNGKey(args.seed)
    params, state = model.init(key, x[:1])
    config = {k: v for k, v in vars(args).items() if k not in ("out", "checkpoint_dir")}
    print(json.dumps({"config": {**config, "augment": augmented}}), flush=True)  # resnet always augments
    history = []

    def log(h: dict) -> None:  # fit's per-epoch record; the validation data is the test set
        minutes = (history[-1]["minutes"] if history else 0.0) + h["seconds"] / 60
        record = {"model": args.model, "epoch": h["epoch"] + 1, "train_loss": h["train_loss"],
                  "train_accuracy": h["train_accuracy"], "test_loss": h["val_loss"],
                  "test_accuracy": h["val_accuracy"], "minutes": minutes}
        history.append(record)
        print(json.dumps(record), flush=True)
        if args.out:
            with open(args.out, "a") as f:
                f.write(json.dumps(record) + "\n")

    fit(model, params, state, (x, y), loss="cross_entropy", optimizer=optimizer, epochs=epochs, batch_size=BATCH,
        key=key, validation_data=(x_test, y_test), checkpoint_dir=args.checkpoint_dir, on_epoch_end=log,
        augment=functools.partial(augment, shift=args.shift, flip=True, fill=background) if augmented else None,
        engine="scan", progress=False)
    if not history:
        print(f"{args.model}: all {epochs} epochs were already done in {args.checkpoint_dir}")
        return {"history": history}
    last = history[-1]
    best = max(history, key=lambda r: r["test_accuracy"])
    print(f"{args.model}: test accuracy {last['test_accuracy']:.4f} after {last['epoch']} epochs, "
          f"{last['minutes']:.1f} min in this run (best epoch {best['epoch']}: {best['test_accuracy']:.4f}); "
          f"jax {jax.__version__}, backend {jax.default_backend()}")
    return {"history": history}


if __name__ == "__main__":
    main()
