"""The example plugin plugins/tgsample-apg as installed in this environment (``make install``).

Its behaviour is tested by its own tests (plugins/tgsample-apg/tests, collected by the root
pytest); here: the installed metadata matches its pyproject, ``tgsample list`` shows it, and
``tgsample generate`` samples with it (apg + heun + cosine) exactly as ``tgsample.sample`` does.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tgsample import registry

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

PLUGIN_DIR = Path(__file__).resolve().parents[1] / "plugins" / "tgsample-apg"


def declared() -> dict[tuple[str, str], str]:
    meta = tomllib.loads((PLUGIN_DIR / "pyproject.toml").read_text())
    groups = meta["project"]["entry-points"]
    return {(g.removeprefix(registry.GROUP_PREFIX), n): v for g, eps in groups.items() for n, v in eps.items()}


def tgsample_cli(*args: str) -> subprocess.CompletedProcess:
    exe = Path(sys.executable).with_name("tgsample")
    return subprocess.run([str(exe), *args], capture_output=True, text=True, timeout=60)


def test_installed_metadata_matches_the_plugin_pyproject():
    want = declared()
    assert {kind for kind, _ in want} == {"guidance", "solvers", "schedules"}
    registry.refresh()
    got = {(e.kind, e.name): e.value for e in registry.entries() if e.dist == "tgsample-apg"}
    assert got == want, "reinstall the plugin: pip install -e plugins/tgsample-apg (make install does it)"


def test_the_plugin_is_an_editable_install_of_this_tree():
    import tgsample_apg

    assert Path(tgsample_apg.__file__).resolve().is_relative_to(PLUGIN_DIR)


def test_cli_lists_and_checks_the_plugin():
    done = tgsample_cli("list", "--json")
    assert done.returncode == 0, done.stderr
    rows = {(r["kind"], r["name"]): r for r in json.loads(done.stdout)}
    for key, value in declared().items():
        assert rows[key]["dist"] == "tgsample-apg" and rows[key]["value"] == value and rows[key]["active"]
    table = tgsample_cli("list", "schedules")
    assert any(ln.split()[:3] == ["cosine", "schedules", "tgsample-apg"] for ln in table.stdout.splitlines())
    checked = tgsample_cli("list", "guidance", "--check", "--pattern", "apg")
    assert checked.returncode == 0, checked.stderr
    [line] = [ln for ln in checked.stdout.splitlines() if ln.startswith("apg")]
    assert "tgsample-apg" in line and " loaded " in line


@pytest.mark.parametrize("kind", ["guidance", "solvers", "schedules"])
def test_list_filters_by_kind_and_pattern(kind):
    done = tgsample_cli("list", kind, "--json", "--pattern", "*e*")
    rows = json.loads(done.stdout)
    assert rows and all(r["kind"] == kind and "e" in r["name"] for r in rows)


def test_generate_cli_samples_with_the_plugin_guidance_solver_and_schedule(tmp_path):
    """``tgsample generate`` with apg + heun + cosine by name gives exactly what tgsample.sample gives."""
    import torch
    from safetensors.torch import load_file

    import lightning_tiny  # noqa: F401  (registers the "tiny" student in-process)
    import tgsample
    from tgsample.lightning.cli import main

    spec = {"name": "apg", "scale": 3.0, "eta": 0.0, "momentum": -0.5}
    out = tmp_path / "out"
    rc = main(["--model.student", "tiny", "--model.guidance", json.dumps(spec), "--model.solver", "heun",
               "--model.schedule", "cosine", "--model.steps", "3", "--data.prompts", "[1,2,3]",
               "--data.batch_size", "3", "--output.dir", str(out), "--output.latents", "true",
               "--trainer.accelerator", "cpu", "--trainer.enable_progress_bar", "false", "--trainer.devices", "1"])
    assert rc == 0
    records = [json.loads(line) for line in (out / "manifest.jsonl").read_text().splitlines()]
    from tgsample_apg.guidance import APG

    full = APG(scale=3.0, eta=0.0, momentum=-0.5).to_spec()  # the manifest records every parameter
    assert full == {"name": "apg", "scale": 3.0, "eta": 0.0, "norm_threshold": 0.0, "momentum": -0.5}
    assert [r["config"]["guidance"] for r in records] == [full] * 3
    assert {r["config"]["solver"] for r in records} == {"heun"} and {r["config"]["schedule"] for r in records} == {"cosine"}
    cli = torch.stack([load_file(str(out / r["latent"]))["x"] for r in records])

    model = registry.create("students", "tiny")
    cond, uncond = model.encode([r["prompt"] for r in records], None)
    api = tgsample.sample(model, cond, uncond=uncond, seeds=[r["seed"] for r in records], guidance=spec,
                          solver="heun", schedule="cosine", steps=3)
    torch.testing.assert_close(cli.to(api.dtype), api, rtol=1e-5, atol=1e-5)
    cfg = tgsample.sample(model, cond, uncond=uncond, seeds=[r["seed"] for r in records],
                          guidance={"name": "cfg", "scale": 3.0}, solver="heun", schedule="cosine", steps=3)
    assert (cfg - api).abs().max() > 1e-3  # APG is not CFG here
