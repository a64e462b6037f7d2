"""Generation records and the data module that shards them over processes.

A [`Record`][tgsample.lightning.data.Record] is one image to make: `(id, prompt, negative, seed, overrides)`. `prompt`
is
whatever the student's `encode` takes (a text prompt, or a class label such as `3` for the
digit models). Records come from a prompt file (`.txt`: one prompt a line; `.csv`: a header
with `prompt` or `class` and optionally `id`, `negative`, `seed`, `overrides` (JSON);
`.jsonl`: one object a line with the same keys) or from a list of prompts, each crossed with
`seeds` unless the record names its own seed.

Ids are stable: an explicit `id`, else `<index>` (6 digits, the record's position among the
file's records) for a record with its own seed, else `<index>-<seed>`. So a record means the
same thing on every run and every rank, and `<id>.png` names its image.

Sharding is done here, not by Lightning: `Trainer.predict` under DDP wraps the sampler in
`UnrepeatedDistributedSamplerWrapper`, which asserts on a rank with no records. The data module
gives rank `r` of `W` the pending records `r, r + W, ...` (strided, never repeated) through a
sampler Lightning leaves alone, and pads a shorter shard with empty placeholder batches so that every
rank runs the same number of batches (the writer agrees on stopping once per batch, a collective call).
What is pending is decided after the models are built: a `planner` (the writer's) picks it when the
Trainer asks for the data loader.
"""

from __future__ import annotations

import csv
import json
import os
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Optional, Sequence, Union

from jsonargparse.typing import Path_fr

from ..errors import ConfigError
from ..noise import check_seed

__all__ = ["Record", "OVERRIDE_KEYS", "MAX_RECORDS", "read_records", "build_records", "check_unique",
           "GenerationData", "shard"]

OVERRIDE_KEYS = ("guidance", "solver", "solver_options", "schedule", "schedule_options", "steps", "sigmas")
"""settings a record may override for itself (the models are built once per run)."""
RECORD_KEYS = ("id", "prompt", "class", "negative", "negative_prompt", "seed", "overrides")
"""The keys a generation record may have (a JSONL line, a CSV header, a mapping)."""
_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
MAX_RECORDS = 10_000_000
"""the most records one job may hold (they are all in memory on every rank); split bigger jobs."""


@dataclass(frozen=True)
class Record:
    """One image to generate.

    Attributes:
        id: stable, file-name safe (`[A-Za-z0-9._-]`); the image is `images/<id>.png`.
        prompt: what the student encodes (text, or a class label).
        seed: the sample's seed (its noise streams depend on it alone).
        negative: negative prompt / class, or `None`.
        overrides: per-record settings (keys in [`OVERRIDE_KEYS`][tgsample.lightning.data.OVERRIDE_KEYS]).
    """

    id: str
    prompt: Any
    seed: int
    negative: Any = None
    overrides: dict = field(default_factory=dict)

    def as_dict(self) -> dict:
        return asdict(self)

    def key(self) -> str:
        """Canonical JSON of what the record asks for (its identity on disk)."""
        return json.dumps({k: v for k, v in self.as_dict().items()}, sort_keys=True, default=str)


def _check_id(value: Any, where: str) -> str:
    s = str(value)
    if not _ID.fullmatch(s):
        raise ConfigError(f"{where}: id {s!r} is not allowed; ids are 1-128 characters from "
                          "[A-Za-z0-9._-], starting with a letter or digit (they name files)")
    return s


def _json_object(text: str, where: str, what: str) -> dict:
    """`text` parsed as a JSON object, else [`ConfigError`][tgsample.errors.ConfigError] naming `where` and `what`."""
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{where}: {what} is not valid JSON ({exc.msg} at column {exc.colno})") from None
    if not isinstance(value, dict):
        raise ConfigError(f"{where}: {what} must be a JSON object, got {type(value).__name__}")
    return value


def _check_overrides(value: Any, where: str) -> dict:
    if value in (None, ""):
        return {}
    if isinstance(value, str):
        value = _json_object(value, where, f"overrides {value!r}")
    if not isinstance(value, dict):
        raise ConfigError(f"{where}: overrides must be an object, got {type(value).__name__}")
    unknown = sorted(set(value) - set(OVERRIDE_KEYS))
    if unknown:
        raise ConfigError(f"{where}: cannot override {unknown}; a record may override: {', '.join(OVERRIDE_KEYS)}")
    return dict(value)


def _seed(value: Any, where: str) -> int:
    """A record's seed: an integer, or the digits of one (CSV cells are text), in `[0, 2**63)`."""
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value)
    seed = check_seed(value, f"{where}: seed")
    if not 0 <= seed < 2**63:
        raise ConfigError(f"{where}: seed {value!r} must be an integer in [0, 2**63)")
    return seed


def _too_many(n: int, source: str) -> ConfigError:
    return ConfigError(f"{source}: more than {MAX_RECORDS:,} records ({n:,}) in one job; split it into several "
                       "jobs (each in its own --output.dir)")


def _expand(index: int, row: dict, seeds: Sequence[int], where: str) -> list[Record]:
    """The record(s) of one row: its own seed, or one record per seed of `seeds`."""
    unknown = sorted(set(row) - set(RECORD_KEYS))
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {unknown}; allowed: {', '.join(RECORD_KEYS)}")
    if ("prompt" in row) == ("class" in row):
        raise ConfigError(f"{where}: give exactly one of 'prompt' or 'class' (got keys {sorted(row)})")
    prompt = row["prompt"] if "prompt" in row else row["class"]
    if prompt is None or (isinstance(prompt, str) and not prompt.strip() and "class" in row):
        raise ConfigError(f"{where}: the prompt/class is empty")
    negative = row.get("negative", row.get("negative_prompt"))
    negative = None if negative == "" else negative
    overrides = _check_overrides(row.get("overrides"), where)
    base = _check_id(row["id"], where) if row.get("id") not in (None, "") else f"{index:06d}"
    if row.get("seed") not in (None, ""):
        return [Record(base, prompt, _seed(row["seed"], where), negative, overrides)]
    return [Record(f"{base}-{s}", prompt, s, negative, overrides) for s in seeds]


def check_unique(records: Sequence[Record], source: str = "records") -> list[Record]:
    """`records` unchanged, or [`ConfigError`][tgsample.errors.ConfigError] naming the duplicated ids."""
    seen: dict[str, int] = {}
    dups: list[str] = []
    for i, r in enumerate(records):
        if r.id in seen:
            dups.append(f"{r.id!r} (records {seen[r.id]} and {i})")
        seen.setdefault(r.id, i)
    if dups:
        more = f" and {len(dups) - 5} more" if len(dups) > 5 else ""
        raise ConfigError(f"{source}: duplicate id(s) {', '.join(dups[:5])}{more}; every record needs its own id")
    return list(records)


def _seeds(seeds: Union[int, Sequence[int]]) -> list[int]:
    if isinstance(seeds, (str, bytes)) or not isinstance(seeds, Iterable):
        count = check_seed(seeds, "seeds: the count")
        if count > MAX_RECORDS:
            raise _too_many(count, "seeds")
        seeds = range(count)
    out = [_seed(s, f"seeds[{i}]") for i, s in enumerate(seeds)]
    if not out:
        raise ConfigError(f"seeds={seeds!r} gives no seeds; give a count >= 1 or a list of integers")
    return out


def build_records(prompts: Iterable[Any], seeds: Union[int, Sequence[int]] = 1,
                  negative: Any = None) -> list[Record]:
    """Prompts x seeds: record `<index>-<seed>` for each prompt (a str/int, or a row dict) and seed."""
    seeds = _seeds(seeds)
    if isinstance(prompts, (str, bytes)):
        raise ConfigError(f"prompts={prompts!r} is a string; give a list of prompts (or class labels)")
    out: list[Record] = []
    for i, p in enumerate(prompts):
        row = dict(p) if isinstance(p, dict) else {"prompt": p, "negative": negative}
        out += _expand(i, row, seeds, f"prompts[{i}]")
        if len(out) > MAX_RECORDS:
            raise _too_many(len(out), "prompts x seeds")
    if not out:
        raise ConfigError("no prompts were given; give at least one prompt or class")
    return check_unique(out, "prompts")


def _lines(path: Path) -> Iterator[tuple[int, str]]:
    """`(line number, text)` of a UTF-8 file; bytes that are not UTF-8 fail naming the file and line."""
    with path.open("rb") as f:
        for n, raw in enumerate(f, 1):
            try:
                yield n, raw.decode("utf-8-sig" if n == 1 else "utf-8")
            except UnicodeDecodeError as exc:
                raise ConfigError(f"{path}:{n}: line {n} is not UTF-8 text (byte {raw[exc.start]:#04x} at column "
                                  f"{exc.start + 1}); save the prompt file as UTF-8") from None


def _rows_txt(path: Path) -> Iterator[tuple[str, dict]]:
    for n, line in _lines(path):
        if line.strip():
            yield f"{path}:{n}", {"prompt": line.rstrip("\r\n")}


def _rows_jsonl(path: Path) -> Iterator[tuple[str, dict]]:
    for n, line in _lines(path):
        if not line.strip():
            continue
        where = f"{path}:{n}"
        yield where, _json_object(line, where, f"line {n}")


def _rows_csv(path: Path) -> Iterator[tuple[str, dict]]:
    reader = csv.DictReader(line for _, line in _lines(path))
    if not reader.fieldnames:
        return
    for row in reader:
        where = f"{path}:{reader.line_num}"
        if None in row:
            raise ConfigError(f"{where}: line {reader.line_num} has more fields than the header")
        yield where, {k: v for k, v in row.items() if v not in (None, "")}


READERS = {".txt": _rows_txt, ".jsonl": _rows_jsonl, ".csv": _rows_csv}
"""The prompt-file readers, by file suffix."""


def read_records(path: Union[str, Path], seeds: Union[int, Sequence[int]] = 1) -> list[Record]:
    """The records of a `.txt`, `.csv` or `.jsonl` prompt file (see the module docs)."""
    path = Path(path)  # a str, a pathlib.Path or jsonargparse's config-relative Path (absolute via __fspath__)
    reader = READERS.get(path.suffix.lower())
    if reader is None:
        raise ConfigError(f"prompt file {str(path)!r}: unknown format {path.suffix!r}; use one of {', '.join(READERS)}")
    if not path.is_file():
        raise ConfigError(f"prompt file {str(path)!r} does not exist")
    seeds = _seeds(seeds)
    out: list[Record] = []
    for i, (where, row) in enumerate(reader(path)):
        out += _expand(i, row, seeds, where)
        if len(out) > MAX_RECORDS:
            raise _too_many(len(out), str(path))
    if not out:
        raise ConfigError(f"prompt file {str(path)!r} is empty: it has no prompts (blank lines are skipped)")
    return check_unique(out, str(path))


def shard(items: Sequence[Any], rank: int, world: int) -> list[Any]:
    """Rank `rank`'s share of `items`: positions `rank, rank + world, ...` (may be empty)."""
    return list(items[rank::world])


def _collate(batch: list) -> list:
    return [r for r in batch if r is not None]


def _local_sampler(n: int):
    """A sequential sampler over an already-sharded dataset. It subclasses `DistributedSampler` only so
    that Lightning does not wrap it in its own distributed sampler."""
    from torch.utils.data import DistributedSampler

    class LocalShardSampler(DistributedSampler):
        def __init__(self, n: int):  # noqa: D401 - no process group needed: the shard is already local
            self.n = n

        def __iter__(self) -> Iterator[int]:
            return iter(range(self.n))

        def __len__(self) -> int:
            return self.n

        def set_epoch(self, epoch: int) -> None:
            pass

    return LocalShardSampler(n)


def _datamodule_base():
    from lightning.pytorch import LightningDataModule

    return LightningDataModule


class GenerationData(_datamodule_base()):
    """Records from `prompt_file` or `prompts` (crossed with `seeds`), sharded over the processes.

    Args:
        prompt_file: a `.txt`, `.csv` or `.jsonl` file (in a config: relative to the config file).
        prompts: prompts or class labels given directly (instead of a file).
        seeds: a count `n` (seeds `0..n-1`) or a list, for records without their own seed (default 1).
        negative: a negative prompt for every record of `prompts`.
        batch_size: records per `predict_step`.
        num_workers: DataLoader workers (records are tiny: 0 is right).
    """

    def __init__(self, prompt_file: Optional[Path_fr] = None, prompts: Optional[list[Union[str, int]]] = None,
                 seeds: Union[None, int, list[int]] = None, negative: Optional[str] = None, batch_size: int = 8,
                 num_workers: int = 0):
        super().__init__()
        if (prompt_file is None) == (prompts is None):
            raise ConfigError("no records: give prompt_file=... (--data.prompt_file FILE) or prompts=[...] "
                              "(--data.prompts '[...]')" if prompts is None else
                              "give one of prompt_file=... or prompts=[...], not both "
                              f"(got prompt_file={str(prompt_file)!r}, prompts={prompts!r})")
        for name, value, low in (("batch_size", batch_size, 1), ("num_workers", num_workers, 0)):
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise ConfigError(f"{name}={value!r} must be an integer >= {low}")
        self.prompt_file = None if prompt_file is None else os.fspath(prompt_file)
        self.prompts, self.seeds = prompts, 1 if seeds is None else seeds
        self.negative, self.batch_size, self.num_workers = negative, batch_size, num_workers
        self._records: Optional[list[Record]] = None
        #: set by the writer: ``planner(records) -> positions still to generate``, called (on every rank)
        #: when the Trainer asks for the data loader, after the models are built; ``None``: every record
        self.planner: Optional[Callable[[list[Record]], Sequence[int]]] = None
        self.allow_zero_length_dataloader_with_multiple_devices = True

    @property
    def records(self) -> list[Record]:
        """Every record of the job (read once)."""
        if self._records is None:
            self._records = (read_records(self.prompt_file, self.seeds) if self.prompt_file is not None
                             else build_records(self.prompts, self.seeds, self.negative))
        return self._records

    def setup(self, stage: str) -> None:
        _ = self.records  # bad input fails here, on every rank, before any model is built

    def transfer_batch_to_device(self, batch: Any, device: Any, dataloader_idx: int) -> Any:
        """Records are plain data: the module encodes them and moves the conditioning itself."""
        return batch

    def predict_dataloader(self):
        from torch.utils.data import DataLoader

        records = self.records
        todo = records if self.planner is None else [records[i] for i in self.planner(records)]
        trainer = getattr(self, "trainer", None)
        rank, world = (trainer.global_rank, trainer.world_size) if trainer is not None else (0, 1)
        local: list[Optional[Record]] = shard(todo, rank, world)
        # every rank runs the same number of batches: the busiest rank's (placeholders are empty batches)
        batches = -(-len(shard(todo, 0, world)) // self.batch_size)
        local += [None] * (batches * self.batch_size - len(local))
        return DataLoader(local, batch_size=self.batch_size, sampler=_local_sampler(len(local)),
                          collate_fn=_collate, num_workers=self.num_workers)
