"""Distributed batch generation on Lightning `Trainer.predict` (`tgsample generate`).

* [`data`][tgsample.lightning.data]: generation records (id, prompt or class, negative, seed, overrides) and sharding;
* [`module`][tgsample.lightning.module]: [`GenerationModule`][tgsample.lightning.module.GenerationModule], whose
`predict_step` is [`tgsample.sample`][tgsample.sampling.sample];
* [`writer`][tgsample.lightning.writer]: [`GenerationWriter`][tgsample.lightning.writer.GenerationWriter]: the run
directory, resume, SIGTERM;
* [`manifest`][tgsample.lightning.manifest]: atomic writes, self-describing PNGs, the streamed manifest index;
* [`identity`][tgsample.lightning.identity]: what identifies a job (config without weight locations, weights
fingerprint, records);
* [`cli`][tgsample.lightning.cli]: the LightningCLI front end and
[`GenerationTrainer`][tgsample.lightning.cli.GenerationTrainer].

Importing this package imports Lightning (seconds); `import tgsample` does not import it.
"""

from .data import GenerationData, Record, build_records, read_records
from .module import GenerationModule
from .writer import GenerationInterrupted, GenerationWriter

__all__ = ["GenerationData", "GenerationInterrupted", "GenerationModule", "GenerationWriter", "Record",
           "build_records", "read_records"]
