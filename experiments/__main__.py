import matplotlib

from jaxnets import runtime

# The command line draws into files: the one place that picks matplotlib's backend (the library and the
# experiment modules, which notebooks import too, never do).
matplotlib.use("Agg")

# Before any JAX computation: one CPU device per core (fit_seeds splits its seeds over them) and the
# persistent compilation cache (a rerun loads compiled programs instead of recompiling them).
runtime.use_cpu_devices()
runtime.enable_compilation_cache()

from experiments.runner import main  # noqa: E402

raise SystemExit(main())
