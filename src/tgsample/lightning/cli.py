"""`tgsample generate`: batch generation on LightningCLI (jsonargparse).

    tgsample generate            # the embedded default (tgsample.models.DEFAULT_JOB)
    tgsample generate --model.preset digits++ --data.prompts '[0,1,2,3]' --data.seeds 4
    tgsample generate --config configs/digits++.yaml --trainer.devices 2 --trainer.strategy ddp
    tgsample generate --config configs/digits++.yaml --print_config      # the full resolved config

Groups: `--model.*` (GenerationModule: preset, student, teacher, guidance, solver, schedule, steps, ...
by registry name), `--data.*` (GenerationData: the records), `--output.*` (GenerationWriter: where
they go) and `--trainer.*` (GenerationTrainer: the Trainer's arguments that matter to prediction).
Exit status: 0 done, 2 bad input (one line, no traceback), 143 stopped by SIGTERM (rerun to finish).
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import re
import sys
import time
import warnings
from typing import Any, Iterator, Optional, Sequence, Union

from lightning.pytorch import Trainer
from lightning.pytorch.callbacks import Callback, ProgressBar, TQDMProgressBar
from jsonargparse import DefaultHelpFormatter
from lightning.pytorch.cli import LightningCLI

from ..errors import ConfigError
from .data import GenerationData
from .module import GenerationModule
from .writer import GenerationWriter

__all__ = ["main", "build_cli", "GenerationTrainer", "ImagesPerSecondBar", "GenerateCLI"]

QUIET_LOGGERS = ("lightning.pytorch", "lightning.fabric")
"""Lightning's messages that say nothing about generation (hardware banner, tips, a torch deprecation
inside Lightning, the zero-length notice of a finished job, which the writer reports itself)."""
QUIET_WARNINGS = (r"`isinstance\(treespec, LeafSpec\)` is deprecated", r"Total length of .* across ranks is zero")
"""Warning messages (regular expressions) that `tgsample generate` hides: Lightning's own, about nothing the user
set."""


class ImagesPerSecondBar(TQDMProgressBar):
    """Lightning's TQDM bar (rank 0) with the images and images/s of the run so far as its postfix
    (all ranks: rank 0's count times the number of ranks)."""

    @property
    def predict_description(self) -> str:
        return "Generating"

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


class GenerationTrainer(Trainer):
    """Lightning's Trainer with only the arguments that matter to `Trainer.predict` (`--trainer.*`).

    No logger, checkpointing or model summary; the images/s progress bar unless a progress bar is
    given or it is disabled. Lightning's own SIGTERM handler is not installed: it broadcasts from
    inside the handler, which deadlocks against a rank waiting in a barrier; the GenerationWriter
    handles SIGTERM for the whole run instead.

    Args:
        accelerator: cpu, gpu, cuda, mps, tpu or auto.
        strategy: auto, ddp (one process per device), ddp_spawn, ...
        devices: devices per node (a count, a list of indices, or auto).
        num_nodes: how many nodes (machines).
        precision: 32-true, 16-mixed, bf16-mixed, 16-true, bf16-true (part of the run's identity).
        callbacks: extra Lightning callbacks.
        enable_progress_bar: show the progress bar (images/s).
        limit_predict_batches: stop after this many batches per process (or this fraction).
    """

    def __init__(self, accelerator: str = "auto", strategy: str = "auto",
                 devices: Union[list[int], str, int] = "auto", num_nodes: int = 1,
                 precision: Optional[str] = None, callbacks: Optional[list[Callback]] = None,
                 enable_progress_bar: bool = True, limit_predict_batches: Optional[Union[int, float]] = None):
        callbacks = list(callbacks or [])
        if enable_progress_bar and not any(isinstance(c, ProgressBar) for c in callbacks):
            callbacks.append(ImagesPerSecondBar())
        super().__init__(accelerator=accelerator, strategy=strategy, devices=devices, num_nodes=num_nodes,
                         precision=precision, callbacks=callbacks, enable_progress_bar=enable_progress_bar,
                         limit_predict_batches=limit_predict_batches, logger=False, enable_checkpointing=False,
                         enable_model_summary=False)
        self._signal_connector.register_signal_handlers = lambda: None  # see the class docs


def _plain(text: str) -> str:
    """Help text without docstring markup: Sphinx roles (`` :class:`~a.B` `` -> `B`), double backticks,
    Markdown cross-references (`` [`sample`][tgsample.sample] `` -> `sample`) and code spans."""
    def role(m: re.Match) -> str:
        target = m.group(1).strip()
        label = re.match(r"(.*?)\s*<[^>]*>$", target)
        if label:
            return label.group(1)
        return target[1:].rsplit(".", 1)[-1] if target.startswith("~") else target

    text = re.sub(r":[a-z:]+:`([^`]+)`", role, text)
    text = re.sub(r"\[`?([^\]`]+)`?\]\[[^\]]*\]", r"\1", text)
    return text.replace("``", "").replace("`", "")


GROUPS = {
    "trainer": "--trainer.*: where to run (the Lightning Trainer's prediction arguments)",
    "model": "--model.*: how to sample (a preset and overrides, by registry name)",
    "data": "--data.*: what to generate (records: prompt or class, seed, overrides)",
    "output": "--output.*: where the images go (resumable run directory)",
}
"""the argument groups of `tgsample generate --help`, in order"""
DESCRIPTION = ("Batch generation on Lightning's Trainer.predict: one image per record, resumable (rerun the same "
               "command), any number of processes. With no arguments: the embedded default model and records.")
"""The description at the top of `tgsample generate --help`."""
USAGE = ("tgsample generate [--config FILE] [--print_config] [--model.* ...]\n"
         "                         [--data.* ...] [--output.* ...] [--trainer.* ...]")
"""The usage line of `tgsample generate --help`."""


def preset_help(names: Sequence[str], default: str) -> str:
    """The help of `--model.preset`: the default, then every preset (`tgsample list presets` shows
    their settings); a student's two presets `NAME` and `NAME++` (teacher-guided) are named once."""
    both = sorted(n for n in names if not n.endswith("++") and n + "++" in names)
    rest = sorted(n for n in names if n not in both and n.removesuffix("++") not in both)
    listed = ", ".join(both) + (f"; also {', '.join(rest)}" if rest else "")
    return f"named settings (default without --model.student: {default}): NAME or NAME++ (teacher-guided) for {listed}"


def _metavar(name: str) -> str:
    """A short placeholder for an option's value, so that most options fit on one help line."""
    if name.endswith("_options"):
        return "JSON"
    special = {"guidance": "SPEC", "prompt_file": "FILE", "dir": "DIR", "negative": "TEXT", "precision": "P"}
    if name in special:
        return special[name]
    if name in ("sigmas", "prompts", "callbacks"):
        return "LIST"
    if name in ("steps", "num_nodes", "devices", "batch_size", "num_workers", "preview", "seeds", "queue",
                "limit_predict_batches"):
        return "N"
    return "NAME"


class HelpFormatter(DefaultHelpFormatter):
    """jsonargparse's help with each option's default, without its type annotation (the help says what
    it takes) or the list of every known Callback subclass, so that it fits on two screens."""

    def _get_help_string(self, action: Any) -> str:
        text = re.sub(r", known subclasses: [^)]*", "", super()._get_help_string(action))
        head, sep, _ = text.rpartition(" (type: ")
        if not sep:
            return text
        return head if action.default in (None, argparse.SUPPRESS) else f"{head} (default: %(default)s)"

    def _split_lines(self, text: str, width: int) -> list:
        """argparse's wrapping, but never inside a hyphenated name (`digits-compact`, `--model.preset`)."""
        import textwrap

        return textwrap.wrap(" ".join(text.split()), width, break_on_hyphens=False)


class GenerateCLI(LightningCLI):
    """LightningCLI for generation: the `--output.*` group, clean help, the embedded default."""

    def add_default_arguments_to_parser(self, parser: Any) -> None:
        """No `--seed_everything`: every sample's noise comes from its own record's seed."""

    def _set_seed(self) -> None:
        pass

    def add_arguments_to_parser(self, parser: Any) -> None:
        parser.add_lightning_class_args(GenerationWriter, "output")
        from .. import presets
        from ..models import DEFAULT_JOB

        for key, title in GROUPS.items():
            parser.groups[key].title, parser.groups[key].description = title, None
        for action in parser._actions:
            if action.dest in {*GROUPS, "trainer.callbacks.help"}:  # per-group config files, subclass help
                action.help = argparse.SUPPRESS
            elif action.dest == "print_config":
                action.help = "print the resolved config (YAML) and exit"
            elif action.dest == "model.preset":
                action.help = preset_help(presets.names(), DEFAULT_JOB["preset"])
            elif isinstance(action.help, str) and action.help != argparse.SUPPRESS:
                action.help = _plain(action.help)
            if action.metavar is None and action.option_strings and action.dest.split(".")[0] in GROUPS:
                action.metavar = _metavar(action.dest.split(".")[-1])

    def before_instantiate_classes(self) -> None:
        """The embedded default (`tgsample.models.DEFAULT_JOB`) for what was not given."""
        from ..models import DEFAULT_JOB

        model, data = self.config["model"], self.config["data"]
        if model.get("preset") is None and model.get("student") is None:
            model["preset"] = DEFAULT_JOB["preset"]
            if data.get("prompt_file") is None and data.get("prompts") is None:  # the example records
                data["prompts"] = list(DEFAULT_JOB["prompts"])
                data["seeds"] = DEFAULT_JOB["seeds"] if data.get("seeds") is None else data["seeds"]


def build_cli(argv: Optional[list[str]] = None) -> GenerateCLI:
    """Parse `argv` and instantiate the module, data module and Trainer (no run)."""
    with warnings.catch_warnings():  # argv is sys.argv minus "generate": not the mistake this warns about
        warnings.filterwarnings("ignore", message="LightningCLI's args parameter")
        return _build_cli(argv)


def _build_cli(argv: Optional[list[str]]) -> GenerateCLI:
    return GenerateCLI(
        GenerationModule, GenerationData, run=False, args=argv, trainer_class=GenerationTrainer,
        save_config_callback=None, auto_configure_optimizers=False,
        parser_kwargs={"prog": "tgsample generate", "usage": USAGE, "formatter_class": HelpFormatter,
                       "description": DESCRIPTION, "default_env": False, "exit_on_error": False},
    )


def one_line(exc: BaseException) -> str:
    """A jsonargparse parse error in one line: `--key: <the innermost reason>`."""
    text = str(exc)
    m = re.match(r'Parser key "([^"]+)":\s*(.*)', text, re.S)
    if not m:
        return " ".join(text.split())
    key, rest = m.groups()
    reasons = [line.strip()[2:] for line in rest.splitlines() if line.strip().startswith("- ")]
    reasons = [r for r in reasons if "NoneType" not in r] or [" ".join(rest.split())]
    reason = re.sub(r"^Not of type \S+: ", "", reasons[0])
    given = re.search(r"Given value: (.*)", rest)
    tail = f" (given: {given.group(1).strip()})" if given and given.group(1).strip() not in reason else ""
    return re.sub(r"<class '([\w.]+)'>", r"\1", f"--{key}: {reason}{tail}")


@contextlib.contextmanager
def quiet() -> Iterator[None]:
    """Lightning's informational messages and known-irrelevant warnings off (see `QUIET_WARNINGS`)."""
    loggers = [logging.getLogger(name) for name in QUIET_LOGGERS]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.WARNING)
    try:
        with warnings.catch_warnings():
            for pattern in QUIET_WARNINGS:
                warnings.filterwarnings("ignore", message=pattern)
            yield
    finally:
        for lg, level in zip(loggers, levels):
            lg.setLevel(level)


def _generate(argv: list[str]) -> int:
    from jsonargparse import ArgumentError

    with quiet():
        try:
            cli = build_cli(argv)
        except ArgumentError as exc:
            raise ConfigError(one_line(exc)) from None
        writer = next(c for c in cli.trainer.callbacks if isinstance(c, GenerationWriter))
        writer.cli_config = cli.parser.dump(cli.config, skip_unset=False)
        cli.trainer.predict(cli.model, datamodule=cli.datamodule, return_predictions=False)
    return 0


def main(argv: Optional[list[str]] = None) -> int:
    """Run `tgsample generate`; returns the exit status (see the module docs)."""
    from ..cli import guarded

    return guarded("tgsample generate", _generate, list(sys.argv[1:] if argv is None else argv))


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
