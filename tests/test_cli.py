"""The command line as a new user meets it (issues 13 item 6 and 16): ``tgsample generate --help`` that fits
on two screens, the no-argument default run (quiet, with a summary; its rerun says it is done), paths in a
config relative to the config, and one-line errors with exit status 2 from every subcommand."""

from __future__ import annotations

import errno
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import lightning_tiny  # noqa: F401  (the "tiny" models)
from tgsample import cli
from tgsample.lightning import writer

ROOT = Path(__file__).resolve().parents[1]
EXE = str(Path(sys.executable).with_name("tgsample"))
CPU = ["--trainer.accelerator", "cpu", "--trainer.enable_progress_bar", "false"]
NOISE = ("GPU available", "TPU available", "litlogger", "LeafSpec", "Warning", "Traceback", "distributed_backend",
         "Loading weights")


def tgsample(*args: str, cwd: Path, env: dict | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "COLUMNS": "80", "OMP_NUM_THREADS": "1", **(env or {})}
    return subprocess.run([EXE, *args], capture_output=True, text=True, cwd=cwd, env=env, timeout=300)


# --- generate --help -------------------------------------------------------------------------

def test_generate_help_fits_on_two_screens_and_shows_what_generation_needs(tmp_path):
    done = tgsample("generate", "--help", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    text = done.stdout
    assert len(text.splitlines()) <= 100, len(text.splitlines())  # two 50-line screens at 80 columns
    for flag in ("accelerator", "devices", "num_nodes", "strategy", "precision", "callbacks", "enable_progress_bar",
                 "limit_predict_batches"):
        assert f"--trainer.{flag} " in text, flag
    for flag in ("--model.preset", "--model.guidance", "--data.prompt_file", "--data.seeds", "--output.dir",
                 "--output.overwrite", "--output.extend", "--print_config"):
        assert flag in text, flag
    for training in ("max_epochs", "gradient_clip_val", "accumulate_grad_batches", "val_check_interval",
                     "num_sanity_val_steps", "seed_everything", "known subclasses", "Customize every aspect"):
        assert training not in text, training
    for markup in (":class:", ":mod:", ":data:", ":func:", "``", "]["):
        assert markup not in text, markup
    flat = " ".join(text.split())  # the help never breaks a name at its hyphen
    names = subprocess.run([sys.executable, "-c", "from tgsample import presets; print(*presets.names())"],
                           capture_output=True, text=True, check=True).stdout.split()  # as installed, no test models
    from tgsample.models import DEFAULT_JOB

    # every preset is named (a student's NAME and NAME++ once), and the default
    assert all(re.search(rf"[ ,]{re.escape(n.removesuffix('++'))}[,;]? ", flat + " ") for n in names), names
    assert f"default without --model.student: {DEFAULT_JOB['preset']}" in flat


def test_the_preset_help_names_every_preset():
    from tgsample import presets
    from tgsample.lightning.cli import preset_help

    text = preset_help(presets.names(), "x++")
    listed = text.split(" for ", 1)[1].replace("; also", ",").split(", ")
    assert {n.removesuffix("++") for n in presets.names()} <= {n.removesuffix("++") for n in listed}
    assert preset_help(["a", "a++", "b++"], "a++").endswith("for a; also b++")


# --- the default run, quiet, with a summary; its rerun ----------------------------------------

def test_no_arguments_runs_the_embedded_default_quietly_and_its_rerun_is_done(tmp_path):
    from tgsample.models import DEFAULT_JOB as DEFAULT

    first = tgsample("generate", "--trainer.accelerator", "cpu", cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    out = tmp_path / "outputs" / DEFAULT["preset"]  # the default directory is named after the preset
    n = len(DEFAULT["prompts"]) * DEFAULT["seeds"]
    assert len(list((out / "images").glob("*.png"))) == n and (out / "preview.png").exists()
    said = first.stdout + first.stderr
    assert not [w for w in NOISE if w in said], said
    assert f"wrote {n} image(s)" in first.stdout and "images/s" in first.stdout and "preview: " in first.stdout
    before = {p: (p.read_bytes(), p.stat().st_mtime_ns) for p in out.rglob("*") if p.is_file()}
    again = tgsample("generate", "--trainer.accelerator", "cpu", cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    assert f"{n} of {n} already done" in again.stdout and not [w for w in NOISE if w in again.stdout + again.stderr]
    assert {p: (p.read_bytes(), p.stat().st_mtime_ns) for p in out.rglob("*") if p.is_file()} == before


# --- paths in a config are relative to the config ---------------------------------------------

def test_a_prompt_file_in_a_config_resolves_against_the_config(tmp_path, monkeypatch):
    from tgsample.lightning.cli import build_cli

    elsewhere = tmp_path / "elsewhere" / "configs"
    elsewhere.mkdir(parents=True)
    for name in ("digits-compact-explicit.yaml", "digits-prompts.jsonl"):
        shutil.copy(ROOT / "configs" / name, elsewhere / name)
    monkeypatch.chdir(tmp_path)  # neither the repository nor the config's folder
    built = build_cli(["--config", str(elsewhere / "digits-compact-explicit.yaml"), *CPU])
    assert built.datamodule.prompt_file == str(elsewhere / "digits-prompts.jsonl")
    assert [r.id for r in built.datamodule.records][:2] == ["three-0", "three-1"]


# --- one-line errors, exit 2, from every subcommand -------------------------------------------

ERRORS = {
    "demo: unknown student": (["demo", "--student", "digitz"], "unknown students name 'digitz'"),
    "demo: bad count": (["demo", "--per-class", "0"], "--per-class=0"),
    "demo: bad lam": (["demo", "--lam", "2"], "lam=2.0 is outside the allowed range"),
    "demo: not a number": (["demo", "--steps", "x"], "invalid int value: 'x'"),
    "demo: unwritable output": (["demo", "--out", "/proc/no/such/dir"], "No such file or directory"),
    "bench: unknown student": (["bench", "quality", "--students", "digitz", "--seeds", "1", "--n", "10"],
                               "unknown students name 'digitz'"),
    "list: unknown kind": (["list", "solverz"], "'solverz' is not a kind (did you mean 'solvers'?)"),
    "generate: unknown preset": (["generate", "--model.preset", "digitz"], "unknown preset 'digitz'"),
    "generate: unknown option": (["generate", "--model.presett", "digits"], "unrecognized arguments"),
    "generate: num_workers": (["generate", "--model.student", "tiny", "--data.prompts", "[1]",
                               "--data.num_workers", "-1"], "num_workers=-1 must be an integer >= 0"),
    "generate: absurd seeds": (["generate", "--data.seeds", "300000000"], "more than 10,000,000 records"),
    "generate: 3-channel teacher": (["generate", "--model.student", "tiny", "--model.teacher", "tiny-rgb",
                                     "--model.guidance", '{"name": "teacher", "lam": 0.3}', "--data.prompts", "[1]"],
                                    "teacher 'tiny-rgb' makes samples of shape (3, 8, 8)"),
    "generate: missing prompt file": (["generate", "--data.prompt_file", "nope.jsonl"], "File does not exist"),
}


def status(argv: list[str]) -> int:
    """``tgsample ARGV``'s exit status, in this process (argparse exits through SystemExit)."""
    try:
        return cli.main(argv)
    except SystemExit as exc:
        return exc.code


@pytest.mark.parametrize("case", list(ERRORS))
def test_every_subcommand_reports_a_user_error_in_one_line(case, tmp_path, monkeypatch, capsys):
    argv, expected = ERRORS[case]
    monkeypatch.chdir(tmp_path)
    extra = ["--output.dir", str(tmp_path / "out"), *CPU] if argv[0] == "generate" else []
    assert status([*argv, *extra]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and expected in err and err.startswith("tgsample "), err
    assert not (tmp_path / "out").exists()


def test_a_non_utf8_prompt_file_is_one_line_naming_file_and_line(tmp_path, capsys):
    (tmp_path / "p.txt").write_bytes(b"a cat\n\xff\xfe\n")
    argv = ["generate", "--model.student", "tiny", "--data.prompt_file", str(tmp_path / "p.txt"),
            "--output.dir", str(tmp_path / "out"), *CPU]
    assert cli.main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "p.txt:2: line 2 is not UTF-8 text" in err


def test_a_full_disk_is_one_line_and_the_rerun_finishes(tmp_path, monkeypatch, capsys):
    out = tmp_path / "out"
    argv = ["generate", "--model.student", "tiny", "--data.prompts", "[0,1,2,3,4,5]", "--data.batch_size", "2",
            "--output.dir", str(out), *CPU]
    real, calls = writer.atomic_write, []

    def full(path, data):
        calls.append(path)
        if len(calls) > 4:  # config.yaml, then three images fit; then the disk is full
            raise OSError(errno.ENOSPC, "No space left on device", str(path))
        real(path, data)

    monkeypatch.setattr(writer, "atomic_write", full)
    assert cli.main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "No space left on device" in err and "rerun the same command" in err
    kept = sorted(p.name for p in (out / "images").glob("*.png"))
    assert len(kept) == 3
    calls.clear()
    monkeypatch.setattr(writer, "atomic_write", lambda path, data: (_ for _ in ()).throw(
        OSError(errno.ENOSPC, "No space left on device", str(path))))
    assert cli.main(argv) == 2  # still full: the same one line, nothing lost
    assert "No space left on device" in capsys.readouterr().err
    assert sorted(p.name for p in (out / "images").glob("*.png")) == kept
    monkeypatch.setattr(writer, "atomic_write", real)
    assert cli.main(argv) == 0  # space again: the rerun finishes the job
    assert len(list((out / "images").glob("*.png"))) == 6


def test_list_into_a_closed_pipe_ends_quietly(tmp_path):
    for _ in range(3):
        done = subprocess.run(f"'{EXE}' list --json | head -1; exit ${{PIPESTATUS[0]}}", shell=True,
                              executable="/bin/bash", capture_output=True, text=True, cwd=tmp_path, timeout=60)
        assert done.stdout == "[\n" and done.stderr == "", done.stderr
        assert done.returncode in (0, cli.EXIT_PIPE)


def test_list_accepts_singular_and_plural_kinds(capsys):
    from tgsample import listing

    for spelling in ("solver", "solvers", "guidances", "guidance", "Teacher", "preset"):
        assert listing.main([spelling]) == 0
    out = capsys.readouterr().out
    assert "euler" in out and "cfg" in out and "digits" in out and "digits-compact++" in out
