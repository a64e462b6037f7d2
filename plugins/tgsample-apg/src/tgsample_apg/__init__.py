"""tgsample-apg: an example tgsample plugin.

* guidance `apg` -- Adaptive Projected Guidance (Sadat et al. 2024, arXiv 2410.02416);
* solver `heun` -- Heun's 2nd-order method (Karras et al. 2022) for guidances with a split direction;
* schedule `cosine` -- the cosine schedule (Nichol & Dhariwal 2021) in sigma space.

They are registered through this package's entry points (see its `pyproject.toml`), not by
importing this module: `import tgsample_apg` is never needed to use them.
"""

__version__ = "0.1.0"
