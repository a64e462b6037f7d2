"""Benchmarks (`tgsample bench ...`): `tgsample.bench.quality` reproduces the paper's tables in miniature."""
