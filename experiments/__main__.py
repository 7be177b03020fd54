from jaxnets import runtime

# Before any JAX computation: one CPU device per core (fit_seeds splits its seeds over them) and the
# persistent compilation cache (a rerun loads compiled programs instead of recompiling them).
runtime.use_cpu_devices()
runtime.enable_compilation_cache()

from experiments.runner import main  # noqa: E402

raise SystemExit(main())
