from jaxnets import runtime

# Before any JAX computation: one CPU device per core (fit_seeds splits its seeds over them), the
# persistent compilation cache (a rerun loads compiled programs instead of recompiling them), and
# malloc keeping XLA's large freed buffers for reuse.
runtime.use_cpu_devices()
runtime.enable_compilation_cache()
runtime.keep_freed_memory()

from experiments.runner import main  # noqa: E402

raise SystemExit(main())
