"""``tgsample generate``: batch generation on LightningCLI (jsonargparse).

    tgsample generate --model.preset digits++ --data.prompts '[0,1,2,3]' --data.seeds 4 --output.dir out/
    tgsample generate --config configs/digits++.yaml --trainer.devices 2 --trainer.strategy ddp
    tgsample generate --config configs/digits++.yaml --print_config      # the full resolved config

Groups: ``--model.*`` (:class:`~tgsample.lightning.module.GenerationModule`: preset, student, teacher,
guidance, solver, schedule, steps, ... by registry name), ``--data.*``
(:class:`~tgsample.lightning.data.GenerationData`), ``--output.*``
(:class:`~tgsample.lightning.writer.GenerationWriter`) and ``--trainer.*`` (the Trainer's own flags:
``devices``, ``num_nodes``, ``strategy``, ``precision``, ``accelerator``, ...). Exit status: 0 done,
2 bad input (a clear message, no traceback), 143 stopped by SIGTERM (rerun to finish).
"""

from __future__ import annotations

import sys
import time
from typing import Any, Optional

from lightning.pytorch.callbacks import ProgressBar, TQDMProgressBar
from lightning.pytorch.cli import LightningCLI

from ..errors import TgsampleError
from .data import GenerationData
from .module import GenerationModule
from .writer import GenerationInterrupted, GenerationWriter

__all__ = ["main", "ImagesPerSecondBar", "GenerateCLI"]


class ImagesPerSecondBar(TQDMProgressBar):
    """Lightning's TQDM bar (rank 0) with the images and images/s of the run so far as its postfix
    (all ranks: rank 0's count times the number of ranks)."""

    def on_predict_start(self, trainer: Any, pl_module: Any) -> None:
        super().on_predict_start(trainer, pl_module)
        self._images, self._t0 = 0, time.perf_counter()

    def on_predict_batch_end(self, trainer: Any, pl_module: Any, outputs: Any, batch: Any, batch_idx: int,
                             dataloader_idx: int = 0) -> None:
        super().on_predict_batch_end(trainer, pl_module, outputs, batch, batch_idx, dataloader_idx)
        self._images += len(outputs["records"]) if isinstance(outputs, dict) else 0
        rate = self._images / max(time.perf_counter() - self._t0, 1e-9) * trainer.world_size
        if self.predict_progress_bar is not None:  # rank 0's count x the number of ranks (shards differ by <= 1)
            self.predict_progress_bar.set_postfix(images=self._images * trainer.world_size,
                                                  images_per_s=f"{rate:.2f}")


class GenerateCLI(LightningCLI):
    """LightningCLI plus the ``--output.*`` group (a callback the Trainer receives)."""

    def add_arguments_to_parser(self, parser: Any) -> None:
        parser.add_lightning_class_args(GenerationWriter, "output")

    def instantiate_trainer(self, **kwargs: Any) -> Any:
        """The Trainer, with the images/s progress bar unless the bar is disabled or one is configured."""
        config = self._get(self.config_init, "trainer", default={})
        callbacks = config.get("callbacks") or []
        has_bar = any(isinstance(c, ProgressBar) for c in (callbacks if isinstance(callbacks, list) else [callbacks]))
        if config.get("enable_progress_bar", True) is not False and not has_bar:
            kwargs["callbacks"] = [*callbacks, ImagesPerSecondBar()]
        return super().instantiate_trainer(**kwargs)


TRAINER_DEFAULTS = {
    "logger": False,
    "enable_checkpointing": False,
    "enable_model_summary": False,
}


def build_cli(argv: Optional[list[str]] = None) -> GenerateCLI:
    """Parse ``argv`` and instantiate the module, data module and Trainer (no run)."""
    import warnings

    with warnings.catch_warnings():  # argv is sys.argv minus "generate": not the mistake this warns about
        warnings.filterwarnings("ignore", message="LightningCLI's args parameter")
        return _build_cli(argv)


def _build_cli(argv: Optional[list[str]]) -> GenerateCLI:
    return GenerateCLI(
        GenerationModule, GenerationData, run=False, args=argv, trainer_defaults=TRAINER_DEFAULTS,
        save_config_callback=None, seed_everything_default=False, auto_configure_optimizers=False,
        parser_kwargs={"prog": "tgsample generate", "description": __doc__.split("\n")[0],
                       "default_env": False},
    )


def main(argv: Optional[list[str]] = None) -> int:
    """Run ``tgsample generate``; returns the exit status (see the module docs)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        cli = build_cli(argv)
        writer = next(c for c in cli.trainer.callbacks if isinstance(c, GenerationWriter))
        writer.cli_config = cli.parser.dump(cli.config, skip_none=False)
        cli.trainer.predict(cli.model, datamodule=cli.datamodule, return_predictions=False)
    except GenerationInterrupted as exc:
        print(f"tgsample generate: {exc}", file=sys.stderr)
        return GenerationInterrupted.exit_code
    except TgsampleError as exc:
        print(f"tgsample generate: error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
