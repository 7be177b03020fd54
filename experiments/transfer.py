"""Transfer learning: pre-train a small CNN on Fashion-MNIST classes 0–4, then learn classes 5–9 from
few, more and all training images, freezing less and less of it.

Tests the architectures deck's slide "Deep neural networks: transfer learning" and the first deck's
"Remarks" with numbers:

* pre-trained initial weights shorten training: fine-tuning from them reaches a target validation
  accuracy in fewer epochs than training the same network from random weights;
* the smaller the new data set, the more of the network should stay frozen (the slide's table: Small —
  freeze all layers, train the softmax; Medium — freeze most layers, train the last layers and the
  softmax; Large — train everything, initialised with the pre-trained weights);
* the convolutional layers are feature extractors: kept frozen, with the last layers replaced and
  retrained, they serve a different task.

The network (:func:`cnn`): conv1 8@5×5 stride 2, conv2 16@3×3, a 2×2 max-pool, dense1 64 and a 5-way
output, pre-trained on classes 0–4 (T-shirt, trouser, pullover, dress, coat) once per seed and cached
in ``checkpoints/``. Its output layer is replaced by a new one for classes 5–9 (sandal, shirt, sneaker,
bag, ankle boot; labels 5–9 become 0–4) with :func:`jaxnets.transfer.replace_head`, and each regime is
trained with :func:`jaxnets.transfer.freeze` holding its frozen layers fixed:

==============  =============================  ===========================
regime          trains                         the slide's row
==============  =============================  ===========================
head_only       the new output layer           Small
frozen_convs    dense1 and the new output      Medium
fine_tune       everything, pre-trained init   Large
scratch         everything, random init        (the baseline)
==============  =============================  ===========================

The seeds of one regime and size train together (``fit_seeds``; fine_tune and scratch share one
call); every regime uses Adam at the same learning rate, the same batches and the same new head's
initial weights. Selection is on a validation split held out of the training images of classes 5–9
(the same balanced split for every size, so that every size's numbers are equally precise — a real
100-image task would have a much smaller one): early stopping on validation accuracy keeps each run's
best epoch, the best regime of a size is the one with the highest mean validation accuracy, and the
test images of classes 5–9 give the reported test accuracies only. Training subsets are balanced
(equal images per class) and nested. "Epochs to target": epochs until a run's validation accuracy
first reaches 98 % of the lowest best validation accuracy of the fine_tune and scratch runs of that
size (so every such run reaches it), interpolated between epochs, 1 when the first epoch does.
A difference counts when it exceeds twice its seed noise plus a margin; quick mode leaves unclear
claims unjudged, the full run counts them as not held.

Command: ``python -m experiments transfer`` (full: 5 seeds, 100 / 1,000 / all 28,000 images) or ``--quick``
(CI: 3 seeds, 50 / 500 / 3,000). Run time on the 2-core CPU (AMD EPYC, 2026-12-01): quick 58 s wall, full
6 min 23 s wall (8.0 min of CPU). Expected result (full run): none of the 4 claims held at this scale. The
network pre-trained on classes 0–4 (test accuracy 0.914) transfers, but the new task is easy enough that
training from scratch catches up: from 100 images, fine-tuning reaches 0.893 validation accuracy, from
scratch 0.893, with the convolutions frozen 0.890, the new head alone 0.793; fine-tuning everything is the
best transfer regime at every size (head only is 10 points behind at 100 images, not ahead), convolutions
frozen trail fine-tuning by 0.004 ± 0.003 at 1,000, and fine-tuning needs 3.7 against 3.9 epochs to the
target at 100 images (2.9 against 3.6 at 1,000, within twice the seed noise). The slide's table is about
ImageNet features and much smaller new data sets; classes 5–9 (footwear, bags, shirts) share little with
tops and trousers. Quick mode gives the full verdict on the head-only claim and leaves the other three
unjudged.

Outputs in ``results/transfer/``: summary.json, runs.csv, accuracy_vs_size.png, learning_curves.png,
report.md; runs/ and checkpoints/ (the pre-trained weights) let a rerun skip finished work.
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

import jax
import matplotlib.pyplot as plt
import numpy as np

from experiments import common
from experiments.cnn_lessons import epochs_to
from jaxnets import checkpoint, data, nn, optim, plot, transfer
from jaxnets.monitors import EarlyStopping
from jaxnets.runtime import environment
from jaxnets.seeds import fit_seeds, init_runs, seed_keys, stack_trees, unstack_tree
from jaxnets.train import make_evaluate_runs_fn

SUMMARY_SCHEMA = {
    "type": "object",
    "required": ["config", "config_resolved", "environment", "dataset", "sizes", "pretraining", "results", "targets",
                 "claims", "seconds"],
    "properties": {
        "claims": common.CLAIMS_SCHEMA,
        "sizes": {"type": "array", "minItems": 2, "items": {"type": "integer", "minimum": 1}},
        "results": {"type": "array", "minItems": 8, "items": {
            "type": "object", "required": ["regime", "size", "val_accuracy", "test_accuracy", "epochs_to_target"],
            "properties": {"regime": {"type": "string"}, "size": {"type": "integer"},
                           "val_accuracy": {"type": "array", "items": {"type": "number"}},
                           "test_accuracy": {"type": "array", "items": {"type": "number"}},
                           "epochs_to_target": {"type": "array", "items": {"type": ["number", "null"]}}}}},
    },
}
SOURCE_CLASSES = (0, 1, 2, 3, 4)  # pre-training task: T-shirt/top, trouser, pullover, dress, coat
TARGET_CLASSES = (5, 6, 7, 8, 9)  # new task: sandal, shirt, sneaker, bag, ankle boot
# regime → the layers it keeps frozen (the rest train); fine_tune and scratch train everything
FROZEN = {"head_only": ("conv1", "conv2", "dense1"), "frozen_convs": ("conv1", "conv2"), "fine_tune": (),
          "scratch": ()}
REGIMES = tuple(FROZEN)
TRANSFER_REGIMES = ("head_only", "frozen_convs", "fine_tune")  # from the pre-trained weights, most frozen first
LABELS = {"head_only": "head only (Small)", "frozen_convs": "convs frozen (Medium)",
          "fine_tune": "fine-tune all (Large)", "scratch": "from scratch"}
GROUPS = (("head_only",), ("frozen_convs",), ("fine_tune", "scratch"))  # regimes trained in one fit_seeds call
# Adam's learning rate per regime: each regime's best mean validation accuracy in a pilot of the quick
# settings over 1e-3, 3e-3 and 1e-2, extended to 3e-2 and 1e-1 for the new head alone, whose best was at the
# grid's edge (a linear layer on fixed features takes larger steps; fine_tune and scratch share one rate)
LEARNING_RATES = {"head_only": 3e-2, "frozen_convs": 3e-3, "fine_tune": 3e-3, "scratch": 3e-3}
PRETRAIN_LEARNING_RATE = 1e-3
TARGET_FRACTION = 0.98  # epochs-to-target: this fraction of the lowest best validation accuracy
ACCURACY_MARGIN = 0.005  # a difference in accuracy counts when it exceeds 2 × seed noise + this
EPOCH_MARGIN = 0.25  # … and one in epochs when it exceeds 2 × seed noise + this


@dataclasses.dataclass
class Config:
    """See the module docstring for the command, run time and expected result."""

    quick: bool = False
    out: Path = Path("results/transfer")
    dataset: str | None = None  # None: Fashion-MNIST if installed, else the digits (same class split)
    seeds: int | None = None  # default 3 (quick) / 5 (full)
    seed: int = 0
    source_train: int | None = None  # pre-training images of classes 0–4; default 6,000 / all
    pretrain_epochs: int | None = None  # default 4 / 8
    sizes: tuple[int, ...] | None = None  # images of classes 5–9 (0: all); default (50, 500, 3000) / (100, 1000, 0)
    epochs: tuple[int, ...] | None = None  # most epochs per size; default (40, 25, 8) / (60, 30, 10)
    validation: int | None = None  # images of classes 5–9 held out for selection; default 1,000 / 2,000

    def resolved(self) -> dict:
        quick = self.quick
        return {"seeds": self.seeds or (3 if quick else 5),
                "source_train": self.source_train or (6000 if quick else 0),
                "pretrain_epochs": self.pretrain_epochs or (4 if quick else 8),
                "sizes": list(self.sizes or ((50, 500, 3000) if quick else (100, 1000, 0))),
                "epochs": list(self.epochs or ((40, 25, 8) if quick else (60, 30, 10))),
                "validation": self.validation or (1000 if quick else 2000)}


# -------------------------------------------------------------------------------------------- data


def select_classes(x: np.ndarray, y: np.ndarray, classes) -> tuple[np.ndarray, np.ndarray]:
    """The examples of ``classes`` with labels renumbered 0, 1, … in the order of ``classes``:
    x (N, …), y (N,) → x (M, …), labels (M,) int32 (classes 5–9 become 0–4)."""
    classes = np.asarray(classes)
    keep = np.isin(y, classes)
    return x[keep], np.searchsorted(classes, y[keep]).astype(np.int32)


def balanced_order(labels: np.ndarray, seed: int) -> np.ndarray:
    """A permutation of the examples, (N,), taking the classes in turn (each class's examples shuffled):
    every prefix whose length is a multiple of the class count K holds the same number of each class
    (as long as no class has run out), so prefixes are balanced, nested subsets."""
    rng = np.random.default_rng(seed)
    per_class = [rng.permutation(np.flatnonzero(labels == c)) for c in np.unique(labels)]
    rounds = max(len(p) for p in per_class)
    table = np.full((rounds, len(per_class)), -1)
    for c, members in enumerate(per_class):
        table[:len(members), c] = members
    order = table.ravel()
    return order[order >= 0]


def size_plan(sizes, epochs, available: int) -> dict[int, int]:
    """Training-subset size → its epoch budget, in the order given; a size of 0 or more than the
    ``available`` images means all of them (a size met twice keeps its first budget)."""
    plan: dict[int, int] = {}
    for n, budget in zip(sizes, epochs, strict=True):
        plan.setdefault(available if n <= 0 or n > available else int(n), int(budget))
    return plan


def target_splits(x: np.ndarray, labels: np.ndarray, validation: int, seed: int):
    """The new task's examples in :func:`balanced_order`, split: the first ``validation`` are the
    validation set, the rest the pool whose first n examples are the training subset of size n (so
    subsets are balanced and nested). Returns ``((x_val, y_val), (x_pool, y_pool))``."""
    order = balanced_order(labels, seed)
    val, pool = order[:validation], order[validation:]
    return (x[val], labels[val]), (x[pool], labels[pool])


def batch_size(n: int) -> int:
    """The batch size for n training images: n // 10 (ten steps an epoch for small sets), at most 64."""
    return max(1, min(64, n // 10))


def patience(max_epochs: int) -> int:
    """Early-stopping patience: a quarter of the epoch budget, at least 3 epochs."""
    return max(3, max_epochs // 4)


# ------------------------------------------------------------------------------------------- model


def cnn(num_classes: int = len(SOURCE_CLASSES)) -> nn.Sequential:
    """(batch, 28, 28, 1) → (batch, num_classes) logits: conv1 8@5×5 stride 2 (→ 14×14×8), ReLU, 2×2
    max-pool (→ 7×7×8), conv2 16@3×3 (→ 7×7×16), ReLU, dense1 64, ReLU, output (He init throughout)."""
    he = "he_normal"
    return nn.Sequential([
        ("conv1", nn.Conv2D(8, 5, strides=2, padding=2, w_init=he)), ("relu1", nn.Activation("relu")),
        ("pool", nn.MaxPool2D(2)), ("conv2", nn.Conv2D(16, 3, padding=1, w_init=he)),
        ("relu2", nn.Activation("relu")), ("flatten", nn.Flatten()),
        ("dense1", nn.Dense(64, w_init=he)), ("relu3", nn.Activation("relu")),
        ("output", nn.Dense(num_classes))], name="transfer_cnn")


def new_head(model: nn.Sequential, params, state, seeds: list[int], input_shape) -> tuple[nn.Sequential, dict, dict]:
    """Each seed's pre-trained network with its output layer replaced by a new, randomly initialised
    5-way one (:func:`jaxnets.transfer.replace_head`; key ``fold_in(PRNGKey(seed), 3)``). params/state:
    stacked (runs, …) → ``(new_model, stacked params, stacked state)``."""
    runs = []
    for r, seed in enumerate(seeds):
        head = [("output", nn.Dense(len(TARGET_CLASSES)))]
        runs.append(transfer.replace_head(model, unstack_tree(params, r), unstack_tree(state, r), head,
                                          key=jax.random.fold_in(jax.random.PRNGKey(seed), 3),
                                          input_shape=input_shape))
    return runs[0][0], stack_trees([p for _, p, _ in runs]), stack_trees([s for _, _, s in runs])


def regime_optimizer(regime: str, params):
    """Adam at the regime's learning rate for its trained layers, zero updates for its frozen ones
    (:func:`jaxnets.transfer.freeze`; the mask depends only on the params' paths, so stacked params
    (runs, …) give the same one)."""
    adam = optim.optimizer("adam", LEARNING_RATES[regime])
    return transfer.freeze(adam, params, list(FROZEN[regime])) if FROZEN[regime] else adam


# ------------------------------------------------------------------------------------- pre-training


def pretrain(config: Config, settings: dict, dataset: data.Dataset, seeds: list[int]) -> tuple[dict, dict, dict]:
    """The network pre-trained on classes 0–4, one run per seed, all trained together: Adam, batch 64,
    ``pretrain_epochs`` epochs, the best epoch by validation accuracy on a tenth of the pre-training
    images. Cached in ``checkpoints/<key>/pretrained``. Returns ``(params, state, record)``: stacked
    params/state and the source task's numbers."""
    x, y = select_classes(dataset.x_train, dataset.y_train, SOURCE_CLASSES)
    order = balanced_order(y, config.seed + 1)[:settings["source_train"] or None]
    x, y = x[order], y[order]
    n_val = len(x) // 10
    model = cnn()
    keys = seed_keys(seeds)
    params, state = init_runs(model, jax.vmap(lambda k: jax.random.fold_in(k, 1))(keys), x[:1])
    key = common.fingerprint({"dataset": dataset.name, "seeds": seeds, "source": settings["source_train"],
                              "epochs": settings["pretrain_epochs"], "lr": PRETRAIN_LEARNING_RATE, "seed": config.seed})
    directory = Path(config.out) / "checkpoints" / key / "pretrained"
    if checkpoint.latest_step(directory) is not None:
        tree, record = checkpoint.restore_checkpoint(directory, {"params": params, "state": state})
        print(f"  pre-trained weights loaded from {directory}", flush=True)
        return tree["params"], tree["state"], record
    started = time.perf_counter()
    epochs = settings["pretrain_epochs"]
    result = fit_seeds(model, params, state, (x[n_val:], y[n_val:]), loss="cross_entropy",
                       optimizer=optim.optimizer("adam", PRETRAIN_LEARNING_RATE), epochs=epochs, batch_size=64,
                       keys=keys, validation_data=(x[:n_val], y[:n_val]),
                       early_stopping=EarlyStopping(patience=epochs, monitor="val_accuracy"), progress=False)
    x_test, y_test = select_classes(dataset.x_test, dataset.y_test, SOURCE_CLASSES)
    _, test = make_evaluate_runs_fn(model, "cross_entropy")(result.params, result.state, x_test, y_test)
    val = np.asarray(result.history["val_accuracy"], np.float64)
    record = {"train_examples": len(x) - n_val, "val_examples": n_val, "epochs": epochs,
              "val_accuracy": np.nanmax(val, axis=0).tolist(), "test_accuracy": np.asarray(test).tolist(),
              "seconds": time.perf_counter() - started}
    checkpoint.save_checkpoint(directory, 0, {"params": result.params, "state": result.state}, metadata=record)
    return result.params, result.state, record


# ------------------------------------------------------------------------------------ the regimes


def concat_runs(trees: list) -> dict:
    """Stacked pytrees (runs_i, …) joined along the run axis: (Σ runs_i, …)."""
    return jax.tree.map(lambda *leaves: np.concatenate([np.asarray(leaf) for leaf in leaves]), *trees)


def train_group(model, regimes: tuple[str, ...], starts: dict, train, val, test, *, seeds: list[int], epochs: int,
                evaluate) -> dict:
    """The seeds of ``regimes`` (which share an optimizer) trained in one ``fit_seeds`` call, each run
    from ``starts[regime]`` ((params, state), stacked (seeds, …)) with its seed's shuffling keys,
    early stopping on validation accuracy. Returns ``{regime: result}``: per seed the best validation
    accuracy, its epoch, the test accuracy of those weights, and the history (epochs × seeds)."""
    started = time.perf_counter()
    params = concat_runs([starts[r][0] for r in regimes])
    state = concat_runs([starts[r][1] for r in regimes])
    keys = jax.vmap(lambda k: jax.random.fold_in(k, 2))(seed_keys(seeds * len(regimes)))
    x, y = train
    result = fit_seeds(model, params, state, train, loss="cross_entropy",
                       optimizer=regime_optimizer(regimes[0], params), epochs=epochs,
                       batch_size=batch_size(len(x)), keys=keys, validation_data=val,
                       early_stopping=EarlyStopping(patience=patience(epochs), monitor="val_accuracy"), progress=False)
    _, test_accuracy = evaluate(result.params, result.state, *test)
    val_history = np.asarray(result.history["val_accuracy"], np.float64)  # (epochs, runs)
    train_loss = np.asarray(result.history["train_loss"], np.float64)
    seconds = (time.perf_counter() - started) / len(regimes)
    out = {}
    for i, regime in enumerate(regimes):
        mine = slice(i * len(seeds), (i + 1) * len(seeds))
        out[regime] = {"regime": regime, "size": len(x), "batch_size": batch_size(len(x)), "max_epochs": epochs,
                       "val_accuracy": np.nanmax(val_history[:, mine], axis=0).tolist(),
                       "best_epoch": np.asarray(result.best_epoch[mine]).tolist(),
                       "test_accuracy": np.asarray(test_accuracy[mine], np.float64).tolist(), "seconds": seconds,
                       "history": {"epoch": list(result.history["epoch"]),
                                   "val_accuracy": val_history[:, mine].tolist(),
                                   "train_loss": train_loss[:, mine].tolist()}}
    return out


def regime_study(config: Config, settings: dict, dataset: data.Dataset, seeds: list[int], params, state) -> dict:
    """Every regime at every size; finished groups are kept in ``runs/`` and not redone. Returns
    ``{(regime, size): result}`` (see :func:`train_group`)."""
    x, labels = select_classes(dataset.x_train, dataset.y_train, TARGET_CLASSES)
    val, (x_pool, y_pool) = target_splits(x, labels, settings["validation"], config.seed)
    test = select_classes(dataset.x_test, dataset.y_test, TARGET_CLASSES)
    model, transferred, transferred_state = new_head(cnn(), params, state, seeds, (1, *x.shape[1:]))
    scratch = init_runs(model, jax.vmap(lambda k: jax.random.fold_in(k, 4))(seed_keys(seeds)), x[:1])
    starts = {r: (transferred, transferred_state) for r in TRANSFER_REGIMES} | {"scratch": scratch}
    store = common.RunStore(config.out, common.fingerprint(common.config_dict(config)))
    evaluate = make_evaluate_runs_fn(model, "cross_entropy")
    results = {}
    for size, max_epochs in size_plan(settings["sizes"], settings["epochs"], len(y_pool)).items():
        for group in GROUPS:
            names = [f"{regime}_n{size}" for regime in group]
            stored = [store.load(name) for name in names]
            if any(s is None for s in stored):
                trained = train_group(model, group, starts, (x_pool[:size], y_pool[:size]), val, test, seeds=seeds,
                                      epochs=max_epochs, evaluate=evaluate)
                stored = [trained[regime] for regime in group]
                for name, result in zip(names, stored):
                    store.save(name, result)
            for regime, result in zip(group, stored):
                results[(regime, size)] = result
                print(f"  n={size:>6} {regime:<13} validation {np.mean(result['val_accuracy']):.4f}, test "
                      f"{np.mean(result['test_accuracy']):.4f} ({result['seconds']:.0f} s)", flush=True)
    return results


def epochs_to_target(result: dict, target: float) -> list[float | None]:
    """Each seed's epochs until its validation accuracy first reaches ``target`` (interpolated; 1 when the
    first epoch does; None if it never does)."""
    val = np.asarray(result["history"]["val_accuracy"], np.float64)  # (epochs, seeds); NaN after stopping
    return [epochs_to(1 - val[:, s], 1 - target) for s in range(val.shape[1])]


def summarize(results: dict, sizes: list[int]) -> tuple[list[dict], dict]:
    """Per regime and size the seeds' numbers with epochs to the size's target; the targets by size."""
    rows, targets = [], {}
    for size in sizes:
        lowest = min(min(results[(r, size)]["val_accuracy"]) for r in ("fine_tune", "scratch"))
        targets[str(size)] = target = TARGET_FRACTION * lowest
        for regime in REGIMES:
            result = {k: v for k, v in results[(regime, size)].items() if k != "history"}
            rows.append(result | {"epochs_to_target": epochs_to_target(results[(regime, size)], target)})
    return rows, targets


# ------------------------------------------------------------------------------------------ claims


def difference(a, b) -> tuple[float, float]:
    """mean(a) − mean(b) and its seed noise sqrt((var a + var b) / n)."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(a.mean() - b.mean()), float(np.sqrt((a.var() + b.var()) / len(a)))


def verdict(d: float, noise: float, margin: float, quick: bool) -> bool | None:
    """Whether d > 0, when |d| exceeds 2 × noise + margin; otherwise None in quick mode, False in full."""
    if abs(d) > 2 * noise + margin:
        return d > 0
    return None if quick else False


def all_verdicts(verdicts: list[bool | None]) -> bool | None:
    """False if any is False, else None if any is None, else True."""
    if False in verdicts:
        return False
    return None if None in verdicts else True


def speed_claim(summary: dict, row: dict, quick: bool) -> dict:
    """Claim 1: fine-tuning reaches the target in fewer epochs than scratch, at every size where the
    epochs resolve the difference (a size where every run of both reaches it in the first epoch is left out)."""
    verdicts, evidence = [], []
    for size in summary["sizes"]:
        fine, scratch = row[("fine_tune", size)]["epochs_to_target"], row[("scratch", size)]["epochs_to_target"]
        text = f"n={size:,}: {np.mean(fine):.1f} vs {np.mean(scratch):.1f}"
        if max(fine + scratch) <= 1.0:
            evidence.append(text + " (both within the first epoch: not resolved)")
            continue
        d, noise = difference(scratch, fine)
        verdicts.append(verdict(d, noise, EPOCH_MARGIN, quick))
        evidence.append(text + f" (×{np.mean(scratch) / np.mean(fine):.1f}, noise {noise:.2f})")
    targets = ", ".join(f"{float(t):.3f}" for t in summary["targets"].values())
    return common.claim("Initial weights pre-trained on a similar, larger data set shorten training: fine-tuning from "
                        "them reaches the target validation accuracy in fewer epochs than training from scratch",
                        "S4", "Deep neural networks: transfer learning", all_verdicts(verdicts) if verdicts else None,
                        "epochs to target (targets " + targets + "), fine-tune vs scratch: " + "; ".join(evidence))


def frozen_claim(summary: dict, val: dict, quick: bool) -> dict:
    """Claim 2: head only beats fine-tune all at the smallest size, fine-tune all wins at the largest."""
    sizes = summary["sizes"]
    verdicts, evidence = [], []
    for size, sign in ((sizes[0], 1), (sizes[-1], -1)):
        d, noise = difference(val[("head_only", size)], val[("fine_tune", size)])
        verdicts.append(verdict(sign * d, noise, ACCURACY_MARGIN, quick))
        evidence.append(f"n={size:,}: head only − fine-tune all {d:+.4f} (noise {noise:.4f})")
    best = {size: max(TRANSFER_REGIMES, key=lambda r: np.mean(val[(r, size)])) for size in sizes}
    return common.claim("The smaller the new data set, the more should stay frozen: training only the new head beats "
                        "fine-tuning everything on the smallest set, fine-tuning everything wins on the largest",
                        "S4", "Deep neural networks: transfer learning (table: Small, Large)", all_verdicts(verdicts),
                        "mean validation accuracy, " + "; ".join(evidence) + ". Best transfer regime by size: "
                        + ", ".join(f"{s:,} → {best[s]}" for s in sizes))


def medium_claim(summary: dict, val: dict, quick: bool) -> dict:
    """Claim 3: at the middle size, convs frozen beats both other transfer regimes."""
    middle = summary["sizes"][len(summary["sizes"]) // 2]
    runner_up = max(("head_only", "fine_tune"), key=lambda r: np.mean(val[(r, middle)]))
    d, noise = difference(val[("frozen_convs", middle)], val[(runner_up, middle)])
    return common.claim("Medium data: freezing the convolutional layers and training the last layers and the head is "
                        "the best regime", "S4", "Deep neural networks: transfer learning (table: Medium)",
                        verdict(d, noise, ACCURACY_MARGIN, quick),
                        f"n={middle:,}, mean validation accuracy: "
                        + ", ".join(f"{r} {np.mean(val[(r, middle)]):.4f}" for r in REGIMES)
                        + f"; convs frozen − {runner_up} {d:+.4f} (noise {noise:.4f})")


def features_claim(summary: dict, val: dict, quick: bool) -> dict:
    """Claim 4: frozen pre-trained convs with retrained last layers beat scratch at the smallest size."""
    sizes = summary["sizes"]
    d, noise = difference(val[("frozen_convs", sizes[0])], val[("scratch", sizes[0])])
    return common.claim("The CONV layers are feature extractors: trained on classes 0–4 and kept frozen, with the "
                        "last layers replaced and retrained, they learn classes 5–9 from few images better than the "
                        "whole network trained from scratch", "S0", "Remarks",
                        verdict(d, noise, ACCURACY_MARGIN, quick),
                        "mean validation accuracy, convs frozen vs scratch: " + "; ".join(
                            f"n={s:,}: {np.mean(val[('frozen_convs', s)]):.4f} vs {np.mean(val[('scratch', s)]):.4f}"
                            for s in sizes) + f" (judged at n={sizes[0]:,}: {d:+.4f}, noise {noise:.4f})")


def judge(summary: dict, quick: bool) -> list[dict]:
    """The four claims, judged on validation accuracy and epochs (never on test accuracy)."""
    row = {(r["regime"], r["size"]): r for r in summary["results"]}
    val = {key: r["val_accuracy"] for key, r in row.items()}
    return [speed_claim(summary, row, quick), frozen_claim(summary, val, quick), medium_claim(summary, val, quick),
            features_claim(summary, val, quick)]


# --------------------------------------------------------------------------------------- outputs


def write_figures(out: Path, summary: dict, results: dict) -> None:
    sizes = summary["sizes"]
    row = {(r["regime"], r["size"]): r for r in summary["results"]}
    fig, (ax_acc, ax_epochs) = plt.subplots(1, 2, figsize=(11, 4))
    for regime in REGIMES:
        test = np.asarray([row[(regime, s)]["test_accuracy"] for s in sizes])  # (sizes, seeds)
        ax_acc.errorbar(sizes, test.mean(axis=1), yerr=test.std(axis=1), marker="o", capsize=3, label=LABELS[regime])
        reached = [mean_reached(row[(regime, s)]["epochs_to_target"]) for s in sizes]
        ax_epochs.plot(sizes, [np.nan if r is None else r for r in reached], marker="o", label=LABELS[regime])
    ax_acc.set(xscale="log", xlabel="training images of classes 5–9", ylabel="test accuracy (classes 5–9)",
               title="accuracy of the selected epoch (mean ± std over seeds)")
    ax_epochs.set(xscale="log", xlabel="training images of classes 5–9", ylabel="epochs",
                  title="epochs to the target validation accuracy")
    for ax in (ax_acc, ax_epochs):
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out / "accuracy_vs_size.png", dpi=90)
    plt.close(fig)

    fig, axes = plt.subplots(1, len(sizes), figsize=(4.2 * len(sizes), 3.6), squeeze=False)
    for ax, size in zip(axes[0], sizes):
        for regime in REGIMES:
            plot.learning_curves(results[(regime, size)]["history"], ("val_accuracy",), ax=ax, label=LABELS[regime])
        ax.axhline(summary["targets"][str(size)], color="grey", linestyle="--", linewidth=0.8)
        ax.set(ylabel="validation accuracy", title=f"{size:,} training images (dashed: target)")
    fig.tight_layout()
    fig.savefig(out / "learning_curves.png", dpi=90)
    plt.close(fig)


def write_runs_csv(out: Path, summary: dict, seeds: list[int]) -> None:
    """runs.csv: one row per regime, size and seed."""
    rows = [{"regime": r["regime"], "size": r["size"], "seed": seed, "val_accuracy": r["val_accuracy"][i],
             "test_accuracy": r["test_accuracy"][i], "best_epoch": r["best_epoch"][i],
             "epochs_to_target": r["epochs_to_target"][i]}
            for r in summary["results"] for i, seed in enumerate(seeds)]
    common.write_csv(out / "runs.csv", rows)


def mean_reached(epochs: list[float | None]) -> float | None:
    """The mean epochs to target of the seeds that reached it; None when none did."""
    reached = [e for e in epochs if e is not None]
    return float(np.mean(reached)) if reached else None


def epochs_cell(epochs: list[float | None]) -> str:
    """A report cell: the mean epochs to target, and how many seeds reached it when not all did."""
    mean = mean_reached(epochs)
    if mean is None:
        return "–"
    missing = sum(e is None for e in epochs)
    return f"{mean:.1f}" + (f" ({len(epochs) - missing}/{len(epochs)} seeds)" if missing else "")


def report(summary: dict) -> str:
    quick = summary["config"]["quick"]
    sizes, settings, pre = summary["sizes"], summary["config_resolved"], summary["pretraining"]
    row = {(r["regime"], r["size"]): r for r in summary["results"]}
    header = ["regime"] + [f"n={s:,}" for s in sizes]

    def table(cell):
        return common.markdown_table(header, [[LABELS[r]] + [cell(row[(r, s)]) for s in sizes] for r in REGIMES])

    accuracy = lambda r: f"{np.mean(r['test_accuracy']):.4f} ± {np.std(r['test_accuracy']):.4f}"  # noqa: E731
    validation = lambda r: f"{np.mean(r['val_accuracy']):.4f}"  # noqa: E731
    epochs = lambda r: epochs_cell(r["epochs_to_target"])  # noqa: E731
    return "\n\n".join([
        f"# Transfer learning{' (quick mode)' if quick else ''}",
        f"A small CNN pre-trained on {summary['dataset']} classes 0–4 ({pre['train_examples']:,} images, "
        f"{pre['epochs']} epochs; test accuracy on classes 0–4 {np.mean(pre['test_accuracy']):.4f}), then trained on "
        f"classes 5–9 under four regimes; {summary['seeds']} seeds, a validation split of {settings['validation']:,} "
        f"images held out of the training images of classes 5–9; {summary['seconds']:.0f} s on "
        f"{summary['environment']['cpu']} ({summary['environment']['cores']} cores).",
        "## What the numbers say", common.claims_markdown(summary["claims"]),
        "## Test accuracy (classes 5–9, the epoch selected on validation)", table(accuracy),
        "![accuracy against training-set size](accuracy_vs_size.png)",
        "## Validation accuracy (what selects)", table(validation),
        "## Epochs to the target validation accuracy",
        "Target per size: " + ", ".join(f"n={s:,}: {summary['targets'][str(s)]:.3f}" for s in sizes)
        + " (– : no seed reached it).", table(epochs),
        "![learning curves](learning_curves.png)",
        "Per-seed numbers: [runs.csv](runs.csv).",
        "## Why a claim may not hold here",
        "The slide's table is about networks pre-trained on ImageNet (a million images, a thousand classes) whose "
        "features serve almost any photograph, and new data sets of a few hundred images. Here the source task is "
        "five Fashion-MNIST classes of tops, trousers, dresses and coats, and the target task (sandals, shirts, "
        "sneakers, bags, ankle boots) is easy for a small CNN trained from scratch, even from 100 images: the "
        "pre-trained features carry over (frozen convolutions come close to fine-tuning), but they are neither "
        "needed nor better, and a new head on frozen features cannot adapt them to footwear and bags. The "
        "epochs to the target differ by less than an epoch, within the seed noise."])


def run(config: Config) -> dict:
    """Pre-trains, trains every regime at every size, writes the figures, runs.csv, report.md and
    summary.json (last), and returns the summary."""
    started = time.perf_counter()
    out = Path(config.out)
    out.mkdir(parents=True, exist_ok=True)
    settings = config.resolved()
    seeds = list(range(config.seed, config.seed + settings["seeds"]))
    dataset = common.load_dataset(config.dataset)
    print(f"transfer on {dataset.name}: {len(seeds)} seeds ({'quick' if config.quick else 'full'})", flush=True)
    params, state, pre = pretrain(config, settings, dataset, seeds)
    print(f"  pre-trained on classes 0–4: test accuracy {np.mean(pre['test_accuracy']):.4f} ({pre['seconds']:.0f} s)",
          flush=True)
    results = regime_study(config, settings, dataset, seeds, params, state)
    sizes = sorted({size for _, size in results})
    rows, targets = summarize(results, sizes)
    summary = {"config": common.config_dict(config), "config_resolved": settings,
               "environment": environment(config.seed), "dataset": dataset.name, "seeds": len(seeds), "sizes": sizes,
               "pretraining": pre, "results": rows, "targets": targets}
    summary["claims"] = judge(summary, config.quick)
    summary["seconds"] = time.perf_counter() - started
    write_figures(out, summary, results)
    write_runs_csv(out, summary, seeds)
    return common.finish_lesson(out, summary, report(summary), SUMMARY_SCHEMA, headline(summary))


def headline(summary: dict) -> str:
    return common.claims_headline(summary["claims"], "transfer learning")
