"""Distributed batch generation on Lightning ``Trainer.predict`` (``tgsample generate``).

* :mod:`.data`: generation records (id, prompt or class, negative, seed, overrides) and sharding;
* :mod:`.module`: :class:`GenerationModule`, whose ``predict_step`` is :func:`tgsample.sample`;
* :mod:`.writer`: :class:`GenerationWriter`: the run directory, resume, SIGTERM;
* :mod:`.manifest`: atomic writes, self-describing PNGs, the streamed manifest index;
* :mod:`.identity`: what identifies a job (config without weight locations, weights fingerprint, records);
* :mod:`.cli`: the LightningCLI front end and :class:`GenerationTrainer`.

Importing this package imports Lightning (seconds); ``import tgsample`` does not import it.
"""

from .data import GenerationData, Record, build_records, read_records
from .module import GenerationModule
from .writer import GenerationInterrupted, GenerationWriter

__all__ = ["GenerationData", "GenerationInterrupted", "GenerationModule", "GenerationWriter", "Record",
           "build_records", "read_records"]
