"""jaxnets.runtime's persistent compilation cache: a second process loads every program the first one
compiled (the weight draws, the epoch's plan, the key folding, the epoch), so its first init and fit
compile nothing. Each process is a fresh interpreter with a time limit."""

import subprocess
import sys
import textwrap

SCRIPT = textwrap.dedent("""
    import collections, sys
    import jax
    import numpy as np
    from jax import monitoring
    from jaxnets import fit, models, optim, runtime

    events = collections.Counter()
    monitoring.register_event_listener(lambda name, **_: events.update([name]))
    runtime.enable_compilation_cache(sys.argv[1])
    model = models.mlp([8, 3])
    x = np.random.default_rng(0).standard_normal((64, 5)).astype(np.float32)
    y = np.arange(64) % 3
    params, state = model.init(jax.random.PRNGKey(0), x[:1])
    result = fit(model, params, state, (x, y), loss="cross_entropy", optimizer=optim.optimizer("adam", 1e-2), epochs=2,
                 batch_size=16, key=jax.random.PRNGKey(1), progress=False)
    print(events["/jax/compilation_cache/cache_misses"], events["/jax/compilation_cache/cache_hits"],
          repr(result.history["train_loss"]))
""")


def run(script, cache_dir):
    done = subprocess.run([sys.executable, str(script), str(cache_dir)], capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stderr[-3000:]
    misses, hits, losses = done.stdout.strip().splitlines()[-1].split(" ", 2)
    return int(misses), int(hits), losses


def test_a_second_process_loads_every_program_of_init_and_fit_from_the_cache(tmp_path):
    script = tmp_path / "train.py"
    script.write_text(SCRIPT)
    first_misses, first_hits, first_losses = run(script, tmp_path / "cache")
    second_misses, second_hits, second_losses = run(script, tmp_path / "cache")
    assert first_misses > 5 and first_hits == 0  # init and fit compile many programs
    assert (second_misses, second_hits) == (0, first_misses)
    assert second_losses == first_losses  # the cache never changes a result
