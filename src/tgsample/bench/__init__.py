"""Benchmarks (``tgsample bench ...``): :mod:`tgsample.bench.quality` reproduces the paper's tables in miniature."""
