"""Mixed precision: the main job's MLP trained in float32 and with ``compute_dtype="bfloat16"``, side by side.

The MLP of ``python -m experiments main`` (784 → 256 → 256 → 10, ReLU, Adam 1e-3, batch 128) on Fashion-MNIST
(digits when it is not installed), the same initial params, key and batches for both precisions, through
``jaxnets.fit`` with its defaults (the scanned epoch). Reported: test accuracy after the last epoch, the
first epoch (compilation included) and the steady epochs (min and median of the epochs after the first).
The last line is ``bf16_accuracy_delta=<bf16 − float32 test accuracy> bf16_speedup=<float32 / bf16 steady
min>``; the goal is an accuracy within 0.5 points of float32.

Command: ``python benchmarks/bench_mixed_precision.py`` (≈ 2 min on 2 CPU cores; ``--quick``: digits,
2 epochs).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from benchmarks import common  # noqa: E402


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smoke run: digits, 2 epochs")
    parser.add_argument("--epochs", type=int, default=None, help="epochs (default 10)")
    args = parser.parse_args(argv)
    import jax

    import jaxnets as jn
    from jaxnets import data, models, optim
    from jaxnets.train import make_evaluate_fn

    dataset = data.load_digits() if args.quick else data.load_default()[0]
    epochs = args.epochs or (2 if args.quick else 10)
    info = common.environment()
    print(f"{dataset.name} {dataset.x_train.shape}; {info['cpu']}, {info['cores']} cores ({info['simd']}), "
          f"jax {info['versions']['jax']}, backend {jax.default_backend()}; {epochs} epochs")
    model = models.mlp([256, 256, dataset.num_classes], activation="relu")
    params, state = model.init(jax.random.PRNGKey(0), dataset.x_train[:1])
    evaluate = make_evaluate_fn(model, "cross_entropy")
    rows, accuracy, steady = [], {}, {}
    for name, dtype in (("float32", None), ("bfloat16", "bfloat16")):
        result = jn.fit(model, params, state, (dataset.x_train, dataset.y_train), loss="cross_entropy",
                        optimizer=optim.optimizer("adam", 1e-3), epochs=epochs, batch_size=128,
                        key=jax.random.PRNGKey(1), compute_dtype=dtype, progress=False)
        _, test_accuracy = evaluate(result.params, result.state, dataset.x_test, dataset.y_test)
        seconds = result.history["seconds"]
        accuracy[name] = float(test_accuracy)
        steady[name] = min(seconds[1:]) if len(seconds) > 1 else float("nan")
        rows.append({"compute dtype": name, "first_epoch_s": seconds[0], "steady_min_s": steady[name],
                     "steady_median_s": float(np.median(seconds[1:])) if len(seconds) > 1 else None,
                     "test_accuracy": accuracy[name]})
    print(common.format_table(rows, ["compute dtype", "first_epoch_s", "steady_min_s", "steady_median_s",
                                     "test_accuracy"]))
    print(f"bf16_accuracy_delta={accuracy['bfloat16'] - accuracy['float32']:+.4f} "
          f"bf16_speedup={steady['float32'] / steady['bfloat16']:.2f}")


if __name__ == "__main__":
    main()
