"""The run directory as its harshest user meets it (issues 13 and 16): one job per directory, every setting
validated before the first file, a manifest that is checked rather than trusted, files the run did not
write left alone, reruns that resume (or say plainly that all is done), weights that may move."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

# the module-scoped fixtures of the end-to-end tests (the reference run) are shared with them
from test_lightning_generate import CPU, assert_same_run, generate, images, manifest
from test_lightning_generate import one_thread, reference  # noqa: F401  (fixtures)
from tgsample.lightning.cli import main
from tgsample.lightning.manifest import create_exclusive, png_bytes, png_record
from tgsample.lightning.writer import preview_grid


def snapshot(out: Path) -> dict[str, tuple[bytes, int]]:
    """Every file's bytes and modification time."""
    return {str(p.relative_to(out)): (p.read_bytes(), p.stat().st_mtime_ns) for p in sorted(out.rglob("*"))
            if p.is_file()}


def runs(out: Path) -> dict[str, str]:
    return {e["id"]: e["run"] for e in manifest(out)}


def run(out: Path, *args: str, prompts: str = "[1,2,3]") -> int:
    return main(["--model.student", "tiny", "--data.prompts", prompts, "--output.dir", str(out), *CPU, *args])


# --- 13.2: one job per directory ------------------------------------------------------------


def test_a_second_job_is_refused_and_extending_keeps_every_row(tmp_path, capsys):
    out = tmp_path / "out"
    assert run(out, prompts="[0,1,2,3]") == 0
    before = snapshot(out)
    assert run(out, prompts="[5,6]") == 2  # job B: other records, same settings
    err = capsys.readouterr().err
    assert "another job: 4 records" in err and "--output.extend" in err and len(err.strip().splitlines()) == 1
    assert snapshot(out) == before  # refused before anything was written
    assert run(out, "--output.extend", "true", prompts="[5,6]") == 2  # would drop A's four finished rows
    assert "finished image(s) that are not records of this job" in capsys.readouterr().err
    assert snapshot(out) == before
    first = runs(out)
    assert run(out, "--output.extend", "true", prompts="[0,1,2,3,4,5]") == 0  # A plus two records
    after = runs(out)
    assert list(after) == [f"{i:06d}-0" for i in range(6)]
    assert {i: after[i] for i in first} == first  # A's rows kept as they were, two new ones made
    capsys.readouterr()
    assert run(out, prompts="[0,1,2,3,4,5]") == 0  # the extended job is now the directory's job
    assert "6 of 6 already done" in capsys.readouterr().out


def test_two_jobs_starting_together_cannot_both_claim_a_directory(tmp_path):
    path = tmp_path / "run.json"
    assert create_exclusive(path, b'{"job": "A"}') is True
    assert create_exclusive(path, b'{"job": "B"}') is False
    assert path.read_bytes() == b'{"job": "A"}' and sorted(p.name for p in tmp_path.iterdir()) == ["run.json"]


# --- 13.3 / 16: everything validated before the first file; a fixed rerun just works ---------------

BAD = {  # name: (arguments, what the one-line error must say)
    "lam -1": (["--model.teacher", "tiny", "--model.guidance", '{"name": "teacher", "lam": -1}'], "lam=-1.0 is outside"),
    "lam 2": (["--model.teacher", "tiny", "--model.guidance", '{"name": "teacher", "lam": 2}'], "lam=2.0 is outside"),
    "lam nan": (["--model.teacher", "tiny", "--model.guidance", '{"name": "teacher", "lam": .nan}'], "lam=nan is outside"),
    "guidance without a name": (["--model.guidance", '{"scale": 2}'], "needs a 'name'"),
    "unknown guidance option": (["--model.guidance", '{"name": "cfg", "scael": 2}'], "did you mean 'scale'"),
    "renoise next on the last step": (["--model.teacher", "tiny", "--model.guidance",
                                       '{"name": "teacher", "lam": 0.3, "guided_steps": [2], "renoise": "next"}'],
                                      "last step"),
    "stock sampler with teacher guidance": (["--model.teacher", "tiny", "--model.solver", "k_euler",
                                             "--model.guidance", '{"name": "teacher", "lam": 0.3}'],
                                            "solver 'k_euler' cannot run TeacherGuidance"),
    "steps 0": (["--model.schedule", "karras", "--model.steps", "0"], "steps=0 must be a positive integer"),
    "sigmas not decreasing": (["--model.sigmas", "[1.0, 2.0, 0.0]"], "not strictly decreasing"),
    "sigmas not ending at 0": (["--model.sigmas", "[3.0, 1.0]"], "must end at sigma 0"),
    "sigma_min > sigma_max": (["--model.schedule", "karras", "--model.steps", "3",
                               "--model.schedule_options", '{"sigma_min": 10, "sigma_max": 1}'], "sigma_min < sigma_max"),
    "solver option typo": (["--model.solver", "tcd", "--model.solver_options", '{"gama": 0.3}'], "did you mean 'gamma'"),
    "solver option out of range": (["--model.solver", "tcd", "--model.solver_options", '{"gamma": 5}'],
                                   "gamma=5 is outside the allowed range"),
    "teacher with 3 channels": (["--model.teacher", "tiny-rgb", "--model.guidance", '{"name": "teacher", "lam": 0.3}'],
                                "teacher 'tiny-rgb' makes samples of shape (3, 8, 8)"),
}


@pytest.mark.parametrize("name", list(BAD))
def test_bad_settings_fail_before_any_file_exists(tmp_path, capsys, name):
    out = tmp_path / "out"
    args, expected = BAD[name]
    assert run(out, *args) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("tgsample generate: error: ") and expected in err, err
    assert not out.exists()  # nothing written: the corrected command needs no --output.overwrite
    assert run(out) == 0 and len(images(out)) == 3


def test_a_bad_record_override_fails_before_the_first_image(tmp_path, capsys):
    rows = [{"class": i % 10, "seed": i} for i in range(20)]
    rows[17]["overrides"] = {"sigmas": [1.0, 2.0, 0.0]}
    (tmp_path / "p.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = tmp_path / "out"
    args = ["--model.student", "tiny", "--data.prompt_file", str(tmp_path / "p.jsonl"), "--output.dir", str(out), *CPU]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "record '000017'" in err and "not strictly decreasing" in err and not out.exists()
    rows[17]["overrides"] = {"sigmas": [2.0, 1.0, 0.0]}
    (tmp_path / "p.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert main(args) == 0 and len(images(out)) == 20


def test_a_failed_load_leaves_nothing_and_the_fixed_rerun_just_works(tmp_path, capsys):
    weights = tmp_path / "w.safetensors"
    out = tmp_path / "out"
    args = ["--model.student", "tiny-file", "--model.student_options", json.dumps({"path": str(weights)})]
    assert run(out, *args) == 2  # the weights are not there (yet)
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "w.safetensors" in err and not out.exists()
    _save_tiny(weights)
    assert run(out, *args) == 0 and len(images(out)) == 3


# --- 16: reruns, moved weights ------------------------------------------------------------------


def _save_tiny(path: Path, scale: float = 1.0) -> None:
    from safetensors.torch import save_file

    from lightning_tiny import TinyNet

    path.parent.mkdir(parents=True, exist_ok=True)
    save_file({k: v * scale for k, v in TinyNet().state_dict().items()}, str(path))


def test_moved_weights_still_resume_and_other_weights_are_refused(tmp_path, capsys):
    a, b = tmp_path / "mount-a" / "w.safetensors", tmp_path / "mount-b" / "w.safetensors"
    _save_tiny(a)
    out = tmp_path / "out"
    opts = lambda p: ["--model.student", "tiny-file", "--model.student_options", json.dumps({"path": str(p)})]  # noqa: E731
    assert run(out, *opts(a)) == 0
    before = snapshot(out)
    b.parent.mkdir()
    shutil.move(str(a), str(b))
    capsys.readouterr()
    assert run(out, *opts(b)) == 0  # the weights moved to another mount: the same job
    assert "3 of 3 already done" in capsys.readouterr().out
    assert {k: v for k, v in snapshot(out).items() if k != "config.yaml"} == \
        {k: v for k, v in before.items() if k != "config.yaml"}
    _save_tiny(b, scale=1.01)  # other weights at the same path: other pixels
    assert run(out, *opts(b)) == 2
    assert "differs in weights" in capsys.readouterr().err


def test_rerun_of_a_finished_run_says_so_and_rewrites_nothing(reference, tmp_path, capsys):
    out = tmp_path / "out"
    shutil.copytree(reference, out)
    before = snapshot(out)
    capsys.readouterr()
    assert generate(out) == 0
    said = capsys.readouterr().out
    assert "13 of 13 already done" in said and "nothing to do" in said
    assert snapshot(out) == before


# --- 13.4: the manifest is checked, not trusted ---------------------------------------------------


def _rewrite(out: Path, edit) -> None:
    rows = manifest(out)
    edit(rows)
    (out / "manifest.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))


def test_forged_paths_are_repaired_and_outside_files_never_read(reference, tmp_path):
    out = tmp_path / "out"
    shutil.copytree(reference, out)
    outside = tmp_path / "outside.png"
    outside.write_bytes(png_bytes(torch.full((8, 8, 1), 255, dtype=torch.uint8), {}))
    first = runs(out)

    def forge(rows):
        rows[3]["path"] = str(outside)  # an absolute path outside the run
        rows[5]["path"] = "images/missing.png"  # a file that does not exist

    _rewrite(out, forge)
    assert generate(out) == 0
    redone = {i for i, r in runs(out).items() if r != first[i]}
    assert redone == {"000003-0", "000005-0"}  # only the two forged rows, nothing else
    assert_same_run(out, reference)
    assert all(e["path"] == f"images/{e['id']}.png" for e in manifest(out))
    grid = preview_grid([out / "images" / f"{e['id']}.png" for e in manifest(out)])
    from PIL import Image

    with Image.open(out / "preview.png") as img:
        assert img.tobytes() == grid.tobytes()  # drawn from the run's own images


def test_a_swapped_png_is_detected_and_only_it_is_redone(reference, tmp_path):
    out = tmp_path / "out"
    shutil.copytree(reference, out)
    first = runs(out)
    shutil.copy(out / "images" / "000002-0.png", out / "images" / "000004-0.png")  # a valid PNG, wrong record
    assert generate(out) == 0
    assert {i for i, r in runs(out).items() if r != first[i]} == {"000004-0"}
    assert_same_run(out, reference)


def test_a_garbled_run_json_is_recovered_from_the_manifest(reference, tmp_path, capsys):
    out = tmp_path / "out"
    shutil.copytree(reference, out)
    images_before = {k: v for k, v in snapshot(out).items() if k.startswith("images/")}
    (out / "run.json").write_text('{"config_hash": "abc", "conf')  # torn
    capsys.readouterr()
    assert generate(out) == 0
    captured = capsys.readouterr()
    assert "rebuilding it" in captured.err and "13 of 13 already done" in captured.out
    assert {k: v for k, v in snapshot(out).items() if k.startswith("images/")} == images_before
    assert json.loads((out / "run.json").read_text())["config_hash"] == manifest(out)[0]["config_hash"]


def test_a_removed_manifest_does_not_regenerate_valid_pngs(reference, tmp_path, capsys):
    out = tmp_path / "out"
    shutil.copytree(reference, out)
    images_before = {k: v for k, v in snapshot(out).items() if k.startswith(("images/", "latents/"))}
    (out / "manifest.jsonl").unlink()
    capsys.readouterr()
    assert generate(out) == 0
    assert "13 of 13 already done" in capsys.readouterr().out
    assert {k: v for k, v in snapshot(out).items() if k.startswith(("images/", "latents/"))} == images_before
    assert [e["id"] for e in manifest(out)] == [e["id"] for e in manifest(reference)]
    assert {e["run"] for e in manifest(out)} == {"adopted"}


# --- 13.5: never delete or overwrite what the run did not write -------------------------------------


def user_png(size: int = 8) -> bytes:
    """A PNG that tgsample did not write (no text chunk)."""
    import io

    from PIL import Image

    buf = io.BytesIO()
    Image.new("L", (size, size), 7).save(buf, format="PNG")
    return buf.getvalue()


def _user_files(out: Path) -> dict[Path, bytes]:
    files = {out / "images" / "holiday.png": user_png(4),
             out / "images" / "notes.txt": b"mine", out / "latents" / "mine.bin": b"\x00\x01",
             out / "manifest" / "README": b"keep", out / "results.csv": b"a,b\n"}
    for path, data in files.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    return files


def test_overwrite_deletes_only_the_old_runs_files(tmp_path):
    out = tmp_path / "out"
    assert generate(out, prompts="[1,2,3]") == 0
    user = _user_files(out)
    old = images(out)
    assert generate(out, "--model.sigmas", "[80.0, 1.0, 0.0]", "--output.overwrite", "true", prompts="[1,2]") == 0
    assert all(p.read_bytes() == data for p, data in user.items())  # every user file, byte for byte
    new = {k: v for k, v in images(out).items() if k.endswith("-0.png")}
    assert sorted(new) == ["000000-0.png", "000001-0.png"] and all(new[k] != old[k] for k in new)
    assert "000002-0.png" not in images(out)  # the old run's own image of a record no longer asked for is gone
    assert {e["config"]["sigmas"] == [80.0, 1.0, 0.0] for e in manifest(out)} == {True}


@pytest.mark.parametrize("name", ["config.yaml", "preview.png", "manifest.jsonl", "run.json"])
def test_a_first_run_never_writes_over_a_users_file(tmp_path, capsys, name):
    out = tmp_path / "out"
    out.mkdir()
    (out / name).write_bytes(b'{"not": "tgsample"}')
    assert run(out) == 2
    assert f"files tgsample did not write ({name})" in capsys.readouterr().err
    assert (out / name).read_bytes() == b'{"not": "tgsample"}' and sorted(p.name for p in out.iterdir()) == [name]


def test_a_users_png_at_a_records_path_is_never_overwritten(tmp_path, capsys):
    out = tmp_path / "out"
    assert run(out) == 0
    mine = user_png()
    (out / "images" / "000001-0.png").write_bytes(mine)  # the user replaced an image with their own PNG
    assert run(out) == 2
    assert "an image tgsample did not write at images/000001-0.png" in capsys.readouterr().err
    assert (out / "images" / "000001-0.png").read_bytes() == mine


# --- 13.7: leftovers; previews -----------------------------------------------------------------


def test_temporaries_of_killed_writers_are_removed(reference, tmp_path):
    out = tmp_path / "out"
    shutil.copytree(reference, out)
    leftovers = [out / ".manifest.jsonl.tmp-4242", out / ".preview.png.tmp-4242", out / ".run.json.tmp-77",
                 out / "images" / ".000001-0.png.tmp-99"]
    for p in leftovers:
        p.write_bytes(b"partial")
    assert generate(out) == 0
    assert not any(p.exists() for p in leftovers)
    assert_same_run(out, reference)


def test_preview_tiles_are_scaled_to_a_viewable_size(tmp_path):
    from PIL import Image

    big = []
    for i in range(16):
        p = tmp_path / f"big{i}.png"
        Image.new("RGB", (1024, 1024), (i * 10, 0, 0)).save(p)
        big.append(p)
    grid = preview_grid(big)
    assert grid.size == (8 * 256 + 9 * 2, 2 * 256 + 3 * 2)  # 8 columns of 256 px tiles, not 8 x 1024
    tiny = tmp_path / "tiny.png"
    Image.new("L", (8, 8), 128).save(tiny)
    assert preview_grid([tiny] * 3).size == (3 * 64 + 4 * 2, 64 + 2 * 2)  # 8 px digits upscaled 8x (nearest)
    assert png_record(tiny) is None  # not written by tgsample
