"""Experiments built on the core: benchmarks, sweeps, comparisons and the GPU scripts' logic.

They import the core (`hyena_lite.*`); the core never imports them.
"""
