"""``tgsample generate`` end to end on a tiny model: sharding under DDP, reproducibility, resume after
SIGKILL, SIGTERM, refusing a different config, and bad input."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

import lightning_tiny  # noqa: F401  (registers the "tiny" student/teacher in this process)
from tgsample.lightning.cli import main
from tgsample.lightning.writer import png_ok

SCRIPT = str(Path(lightning_tiny.__file__).resolve())
CLASSES = "[0,1,2,3,4,5,6,7,8,9,0,1,2]"  # 13 records: uneven over 2 ranks
CPU = ["--trainer.accelerator", "cpu", "--trainer.enable_progress_bar", "false"]
#: these tests compare runs bit for bit across batch sizes, processes and resumes: the exact opt-in
EXACT = ["--model.batch_invariant", "true"]


def generate(out: Path, *args: str, prompts: str = CLASSES, batch: int = 8) -> int:
    return main(["--model.student", "tiny", "--data.prompts", prompts, "--data.batch_size", str(batch),
                 "--output.dir", str(out), "--output.latents", "true", *CPU, *EXACT, "--trainer.devices", "1", *args])


def launch(out: Path, *args: str, prompts: str = CLASSES, batch: int = 3, delay: float = 0.0) -> subprocess.Popen:
    env = {**os.environ, "TINY_DELAY": str(delay), "PYTHONPATH": str(Path(SCRIPT).parent)}
    cmd = [sys.executable, SCRIPT, "--model.student", "tiny", "--data.prompts", prompts, "--data.batch_size",
           str(batch), "--output.dir", str(out), "--output.latents", "true", *CPU, *EXACT, *args]
    return subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def images(out: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted((out / "images").glob("*.png"))}


def pixels(path: Path) -> bytes:
    from PIL import Image

    with Image.open(path) as img:
        return img.tobytes()


def latents(out: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return {p.name: load_file(str(p))["x"] for p in sorted((out / "latents").glob("*.safetensors"))}


def manifest(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "manifest.jsonl").read_text().splitlines()]


def assert_same_run(out: Path, ref: Path) -> None:
    """Same files, same bytes, same samples bit for bit, complete manifest, no leftovers."""
    assert images(out) == images(ref)
    a, b = latents(out), latents(ref)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    ids = [e["id"] for e in manifest(out)]
    assert ids == [e["id"] for e in manifest(ref)] and len(ids) == len(set(ids))
    assert not list(out.rglob(".*.tmp-*")) and not list((out / "manifest").iterdir())


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """One intra-op thread: on a busy 2-core machine a second thread makes small convs ~100x slower."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def reference(one_thread, tmp_path_factory) -> Path:
    """The uninterrupted 1-process run (batch size 8)."""
    out = tmp_path_factory.mktemp("ref") / "out"
    assert generate(out) == 0
    return out


def test_outputs(reference):
    assert len(images(reference)) == 13 and all(png_ok(reference / "images" / n) for n in images(reference))
    entries = manifest(reference)
    assert [e["id"] for e in entries] == [f"{i:06d}-0" for i in range(13)]
    e = entries[3]
    assert e["prompt"] == 3 and e["seed"] == 0 and e["path"] == "images/000003-0.png" and e["seconds"] > 0
    run = json.loads((reference / "run.json").read_text())
    assert e["config_hash"] == run["config_hash"] and e["config"]["student"] == "tiny"
    assert (reference / "preview.png").exists() and (reference / "config.yaml").exists()


def test_batched_default_agrees_with_per_record(reference, tmp_path):
    """The default samples a batch together: same noise per seed, so the samples agree with the exact
    one-record-at-a-time run to float tolerance, whatever the batch size."""
    ref = latents(reference)
    for batch in (13, 4):
        out = tmp_path / f"b{batch}"
        assert main(["--model.student", "tiny", "--data.prompts", CLASSES, "--data.batch_size", str(batch),
                     "--output.dir", str(out), "--output.latents", "true", *CPU, "--trainer.devices", "1"]) == 0
        assert json.loads((out / "run.json").read_text())["config"]["batch_invariant"] is False
        got = latents(out)
        assert got.keys() == ref.keys()
        for k in ref:
            torch.testing.assert_close(got[k], ref[k], rtol=1e-5, atol=1e-5)
        for name in images(reference):
            a, b = (torch.frombuffer(bytearray(pixels(d / "images" / name)), dtype=torch.uint8).int()
                    for d in (out, reference))
            assert (a - b).abs().max() <= 1


def test_batch_size_does_not_change_pixels(reference, tmp_path):
    for batch in (1, 3):
        assert generate(tmp_path / f"b{batch}", batch=batch) == 0
        assert_same_run(tmp_path / f"b{batch}", reference)


@pytest.mark.slow
def test_two_process_ddp_equals_one_process(reference, tmp_path):
    out = tmp_path / "ddp"
    proc = launch(out, "--trainer.devices", "2", "--trainer.strategy", "ddp")
    log = proc.communicate(timeout=120)[0]
    assert proc.returncode == 0, log
    assert_same_run(out, reference)
    assert sorted({e["rank"] for e in manifest(out)}) == [0, 1]
    # fewer records than processes: the idle rank does nothing, nothing crashes
    out1 = tmp_path / "one"
    proc = launch(out1, "--trainer.devices", "2", "--trainer.strategy", "ddp", prompts="[3]")
    log = proc.communicate(timeout=120)[0]
    assert proc.returncode == 0, log
    assert list(images(out1)) == ["000000-0.png"]
    assert pixels(out1 / "images" / "000000-0.png") == pixels(reference / "images" / "000003-0.png")


def _wait_for_images(out: Path, proc: subprocess.Popen, n: int, timeout: float = 60) -> None:
    end = time.time() + timeout
    while len(list((out / "images").glob("*.png"))) < n:
        assert proc.poll() is None, proc.communicate()[0]
        assert time.time() < end, "no progress"
        time.sleep(0.05)


@pytest.mark.slow
def test_sigkill_then_rerun_equals_uninterrupted(reference, tmp_path):
    out = tmp_path / "killed"
    proc = launch(out, "--trainer.devices", "1", delay=0.1)  # ~0.9 s per batch of 3
    _wait_for_images(out, proc, 4)
    proc.kill()
    proc.wait()
    done = images(out)
    assert 4 <= len(done) < 13 and all(png_ok(out / "images" / n) for n in done)
    assert generate(out, batch=5) == 0
    assert_same_run(out, reference)


@pytest.mark.slow
def test_sigterm_stops_within_a_batch_then_rerun_completes(reference, tmp_path):
    """Counted in batches, not seconds (a wall-clock bound fails on a loaded machine): after SIGTERM at most the
    batch in flight is finished -- two batches of 3 past the count taken just before the signal, in case one
    completes between the count and the signal."""
    out = tmp_path / "terminated"
    proc = launch(out, "--trainer.devices", "1", delay=0.1)
    _wait_for_images(out, proc, 3)
    seen = len(images(out))
    proc.send_signal(signal.SIGTERM)
    log = proc.communicate(timeout=120)[0]
    assert proc.returncode == 143, log
    assert "stopped by signal SIGTERM" in log
    done = images(out)
    assert len(done) <= seen + 3, (seen, len(done))  # at most the batch in flight (3 records) after the signal
    assert 3 <= len(done) < 13 and all(png_ok(out / "images" / n) for n in done)
    assert done.items() <= images(reference).items()
    assert generate(out) == 0
    assert_same_run(out, reference)


def test_resume_skips_valid_images_and_redoes_damaged_ones(reference, tmp_path):
    out = tmp_path / "resume"
    assert generate(out) == 0
    first_run = {e["id"]: e["run"] for e in manifest(out)}
    (out / "images" / "000002-0.png").unlink()
    data = (out / "images" / "000005-0.png").read_bytes()
    (out / "images" / "000005-0.png").write_bytes(data[: len(data) // 2])  # truncated by someone else
    assert generate(out) == 0
    assert_same_run(out, reference)
    redone = {e["id"] for e in manifest(out) if e["run"] != first_run[e["id"]]}
    assert redone == {"000002-0", "000005-0"}


def test_different_config_is_refused_unless_overwrite(reference, tmp_path, capsys):
    out = tmp_path / "cfg"
    assert generate(out, prompts="[1,2]") == 0
    assert generate(out, "--model.sigmas", "[80.0, 1.0, 0.0]", prompts="[1,2]") == 2
    err = capsys.readouterr().err
    assert "holds a run with a different config" in err and "settings.sigmas" in err and "--output.overwrite" in err
    before = images(out)
    assert generate(out, "--model.sigmas", "[80.0, 1.0, 0.0]", "--output.overwrite", "true", prompts="[1,2]") == 0
    assert images(out).keys() == before.keys() and images(out) != before


def test_per_record_overrides(tmp_path):
    lines = [{"class": 1, "seed": 0}, {"class": 1, "seed": 0, "overrides": {"sigmas": [80.0, 1.0, 0.0]}}]
    (tmp_path / "p.jsonl").write_text("\n".join(map(json.dumps, lines)))
    for batch in ("1", "2"):
        out = tmp_path / f"o{batch}"
        assert main(["--model.student", "tiny", "--model.batch_invariant", "false", "--data.prompt_file",
                     str(tmp_path / "p.jsonl"), "--data.batch_size", batch, "--output.dir", str(out), *CPU]) == 0
        entries = manifest(out)
        # the manifest records the resolved run: the record's own sigmas, else the tiny student's recipe
        assert entries[1]["config"]["sigmas"] == [80.0, 1.0, 0.0] and entries[0]["config"]["sigmas"] == [80.0, 2.0, 0.5, 0.0]
        assert entries[0]["config"]["solver"] == "euler" and entries[0]["config"]["guidance"] == {"name": "none"}
    a, b = images(tmp_path / "o1"), images(tmp_path / "o2")
    assert a == b and a["000000.png"] != a["000001.png"]


def test_bad_inputs(tmp_path, capsys):
    (tmp_path / "empty.txt").write_text("")
    assert main(["--model.student", "tiny", "--data.prompt_file", str(tmp_path / "empty.txt"),
                 "--output.dir", str(tmp_path / "o"), *CPU]) == 2
    assert "is empty" in capsys.readouterr().err

    (tmp_path / "bad.jsonl").write_text('{"prompt": 1}\n{"prompt": 2\n')
    assert main(["--model.student", "tiny", "--data.prompt_file", str(tmp_path / "bad.jsonl"),
                 "--output.dir", str(tmp_path / "o"), *CPU]) == 2
    assert "bad.jsonl:2: line 2 is not valid JSON" in capsys.readouterr().err

    (tmp_path / "a_file").write_text("")
    assert generate(tmp_path / "a_file" / "out", prompts="[1]") == 2
    assert "is not writable" in capsys.readouterr().err

    (tmp_path / "c.yaml").write_text("model:\n  student: tiny\n  solver: eulr\ndata:\n  prompts: [1]\n")
    assert main(["--config", str(tmp_path / "c.yaml"), "--output.dir", str(tmp_path / "o2"), *CPU]) == 2
    err = capsys.readouterr().err
    assert "unknown solvers name 'eulr'; did you mean 'euler'" in err and "Available solvers: " in err
    assert "k_dpmpp_2m" in err


@pytest.mark.parametrize("config", sorted((Path(__file__).resolve().parents[1] / "configs").glob("*.yaml")),
                         ids=lambda p: p.name)
def test_example_configs_parse(config, monkeypatch):
    """Every YAML under configs/ is a valid ``tgsample generate`` config (names resolve, types check)."""
    from tgsample.lightning.cli import build_cli

    monkeypatch.chdir(config.parents[1])
    cli = build_cli(["--config", str(config), "--trainer.accelerator", "cpu"])
    assert cli.model.settings["student"] and cli.datamodule.records


def test_explicit_config_spells_out_the_preset(monkeypatch):
    """configs/digits-compact-explicit.yaml writes out digits-compact++ field by field: the same settings."""
    from tgsample.lightning.cli import build_cli
    from tgsample.lightning.module import GenerationModule

    root = Path(__file__).resolve().parents[1]
    monkeypatch.chdir(root)
    cli = build_cli(["--config", "configs/digits-compact-explicit.yaml", "--trainer.accelerator", "cpu"])
    preset = GenerationModule(preset="digits-compact++")
    assert {**cli.model.settings, "preset": None} == {**preset.settings, "preset": None}


def test_shipped_digits_preset_is_batch_size_invariant(tmp_path):
    """The shipped digit UNets are not batch-invariant on CPU (batched conv differs in the last bits);
    ``batch_invariant`` (the opt-in) makes the teacher-guided preset bit-identical for batch sizes 1, 3, 8."""
    runs = {}
    for batch in (1, 3, 8):
        out = tmp_path / f"b{batch}"
        assert main(["--model.preset", "digits-compact++", "--data.prompts", "[0,1,2,3,4,5,6,7,8]",
                     "--data.batch_size", str(batch), "--output.dir", str(out), "--output.latents", "true", *CPU,
                     *EXACT]) == 0
        runs[batch] = (images(out), latents(out))
    for batch in (3, 8):
        assert runs[batch][0] == runs[1][0]
        assert all(torch.equal(runs[batch][1][k], runs[1][1][k]) for k in runs[1][1])
    assert json.loads((tmp_path / "b1" / "run.json").read_text())["config"]["settings"]["teacher"] == "digits"
