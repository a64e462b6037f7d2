"""The plugin registry: entry-point discovery, isolation of broken plugins, conflicts, lookup errors.

Broken and duplicate plugins are real distributions: a ``NAME-VERSION.dist-info`` folder with
``METADATA`` and ``entry_points.txt`` plus the modules they point at, put on ``sys.path``.
"""

from __future__ import annotations

import functools
import json
import os
import subprocess
import sys
import textwrap
import uuid
from pathlib import Path

import pytest

from tgsample import listing, registry
from tgsample.errors import ConfigError, PluginError, UnknownNameError


def make_dist(root: Path, name: str, version: str, entry_points: dict[str, dict[str, str]],
              modules: dict[str, str] = {}) -> Path:
    """Write an installed distribution (dist-info + modules) under ``root``."""
    info = root / f"{name.replace('-', '_')}-{version}.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n")
    (info / "entry_points.txt").write_text("".join(
        f"[{group}]\n" + "".join(f"{k} = {v}\n" for k, v in eps.items()) + "\n" for group, eps in entry_points.items()
    ))
    for module, source in modules.items():
        (root / f"{module}.py").write_text(textwrap.dedent(source))
    return root


@pytest.fixture
def site(tmp_path, monkeypatch):
    """A fresh ``site-packages``-like folder on ``sys.path``; the registry re-reads metadata around the test."""
    monkeypatch.syspath_prepend(str(tmp_path))
    registry.refresh()
    yield tmp_path
    monkeypatch.undo()
    registry.refresh()


def unique(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:8]}"


@pytest.fixture
def broken(site):
    """One distribution with a working solver and five broken registrations (one calls sys.exit at import)."""
    boom, ok, quits = unique("tgs_boom"), unique("tgs_ok"), unique("tgs_quits")
    make_dist(site, "tgsample-broken", "0.3", {
        "tgsample.guidance": {"explodes": f"{boom}:Thing", "not_guidance": f"{ok}:NotAGuidance",
                              "bad_product": f"{ok}:make"},
        "tgsample.solvers": {"missing": f"{ok}:nope", "fine": f"{ok}:fine_solver", "quits": f"{quits}:solver"},
        "tgsample.schedules": {"constant": f"{ok}:CONSTANT"},
    }, {
        boom: "raise RuntimeError('boom at import time')\n",
        quits: "import sys\nsys.exit(3)\n",
        ok: """
            CONSTANT = 3
            class NotAGuidance:
                needs_step = False
            def make(**options):
                return "not a guidance"
            def fine_solver(model, x, sigmas, **options):
                return x
        """,
    })
    registry.refresh()
    return boom, ok


# --- discovery ------------------------------------------------------------------------------


def test_builtins_are_found_through_tgsample_entry_points():
    builtin = [e for e in registry.entries() if e.builtin]
    assert {e.dist for e in builtin} == {"tgsample"}
    assert {"cfg", "cfgpp", "teacher", "none"} <= set(registry.names("guidance"))
    assert {"euler", "dpmpp_2m", "k_euler"} <= set(registry.names("solvers"))
    assert registry.names("solvers", "k_*") == sorted(n for n in registry.names("solvers") if n.startswith("k_"))
    from tgsample.guidance import CFG

    assert registry.get("guidance", "cfg") is CFG


def test_discovery_reads_metadata_only_and_imports_nothing_heavy():
    code = ("import sys, tgsample.registry as r; r.entries(); r.names('guidance'); "
            "print([m for m in ('torch', 'diffusers', 'k_diffusion', 'lightning', 'tgsample_apg', "
            "'tgsample.guidance') if m in sys.modules])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert out.stdout.strip() == "[]"


# --- broken plugins -------------------------------------------------------------------------


def test_broken_plugins_are_listed_without_being_imported(broken):
    boom, _ = broken
    assert {"explodes", "not_guidance", "bad_product"} <= set(registry.names("guidance"))
    records = {(e.kind, e.name): e for e in registry.entries()}
    assert records["guidance", "explodes"].dist == "tgsample-broken"
    assert records["guidance", "explodes"].version == "0.3"
    assert records["guidance", "explodes"].status == "unloaded"
    assert boom not in sys.modules


def test_a_plugin_that_raises_on_import_is_named_with_its_distribution(broken):
    boom, _ = broken
    with pytest.raises(PluginError) as info:
        registry.get("guidance", "explodes")
    msg = str(info.value)
    for part in ("'explodes'", f"{boom}:Thing", "tgsample-broken", "0.3", "RuntimeError", "boom at import time"):
        assert part in msg
    assert isinstance(info.value.__cause__, RuntimeError)
    with pytest.raises(PluginError, match="boom at import time"):  # cached: fails the same way again
        registry.create("guidance", "explodes")


def test_missing_attribute_and_non_conforming_objects_are_named(broken):
    _, ok = broken
    with pytest.raises(PluginError, match=rf"'missing' = {ok}:nope from tgsample-broken 0\.3.*AttributeError"):
        registry.get("solvers", "missing")
    with pytest.raises(PluginError, match=r"'constant'.*not callable"):
        registry.get("schedules", "constant")
    with pytest.raises(PluginError, match=r"'not_guidance'.*NotAGuidance.*__call__"):
        registry.get("guidance", "not_guidance")
    registry.get("guidance", "bad_product")  # a factory: only its product can be checked
    with pytest.raises(PluginError, match=r"'bad_product'.*produced an object of type str.*Guidance"):
        registry.create("guidance", "bad_product")


def test_other_plugins_and_builtins_keep_working_next_to_broken_ones(broken):
    _, ok = broken
    with pytest.raises(PluginError):
        registry.get("guidance", "explodes")
    assert registry.get("solvers", "fine") is sys.modules[ok].fine_solver
    assert registry.create("guidance", "cfg", scale=2.0).scale == 2.0
    assert registry.get("guidance", "apg").__name__ == "APG"  # the example plugin, installed in .venv


def test_sampling_with_a_broken_plugin_by_name_raises_the_plugin_error(broken):
    import torch

    import tgsample
    from tgsample import CallableDenoiser

    model = CallableDenoiser(lambda x, sigma: x * 0, sample_shape=(2,))
    with pytest.raises(PluginError, match="explodes.*tgsample-broken 0.3"):
        tgsample.sample(model, seeds=[0], sigmas=torch.tensor([1.0, 0.0]), guidance="explodes")
    out = tgsample.sample(model, seeds=[0], sigmas=torch.tensor([1.0, 0.0]), solver="fine", guidance="cfg")
    assert out.shape == (1, 2)


def test_list_check_reports_each_culprit_and_fails(broken, capsys):
    assert listing.main(["--pattern", "*"]) == 0  # plain listing never loads
    assert listing.main(["--check", "--pattern", "[cefmnbq]*"]) == 1
    out = capsys.readouterr().out
    lines = {ln.split()[0] + " " + ln.split()[1]: ln for ln in out.splitlines()[1:] if ln.strip()}
    assert "failed: RuntimeError: boom at import time" in lines["explodes guidance"]
    assert "failed: AttributeError" in lines["missing solvers"]
    assert "failed: schedules 'constant'" in lines["constant schedules"] and "not callable" in lines["constant schedules"]
    assert "failed: SystemExit: 3" in lines["quits solvers"]  # sys.exit at import is the plugin's failure, not ours
    assert " loaded " in lines["fine solvers"] and " loaded " in lines["cfg guidance"] and " loaded " in lines["euler solvers"]


def test_cli_list_keeps_working_with_a_broken_plugin_installed(site, broken):
    env = {**os.environ, "PYTHONPATH": str(site)}
    exe = str(Path(sys.executable).with_name("tgsample"))
    plain = subprocess.run([exe, "list", "--json"], capture_output=True, text=True, env=env, timeout=60)
    assert plain.returncode == 0, plain.stderr
    rows = {(r["kind"], r["name"]): r for r in json.loads(plain.stdout)}
    assert rows["guidance", "explodes"]["dist"] == "tgsample-broken" and ("guidance", "apg") in rows
    checked = subprocess.run([exe, "list", "guidance", "--check", "--json", "--pattern", "[eac]*"],
                             capture_output=True, text=True, env=env, timeout=60)
    assert checked.returncode == 1
    status = {r["name"]: (r["status"], r["error"]) for r in json.loads(checked.stdout)}
    assert status["explodes"] == ("failed", "RuntimeError: boom at import time")
    assert status["apg"] == ("loaded", None) and status["cfg"] == ("loaded", None)
    quits = subprocess.run([exe, "list", "solvers", "--check", "--pattern", "quits"], capture_output=True, text=True,
                           env=env, timeout=60)
    assert quits.returncode == 1 and "failed: SystemExit: 3" in quits.stdout, (quits.returncode, quits.stdout)


def test_disabling_autoload_reads_only_tgsample(broken, monkeypatch):
    monkeypatch.setenv(registry.DISABLE_ENV, "1")
    registry.refresh()
    guidance = registry.names("guidance")
    assert "cfg" in guidance and "explodes" not in guidance and "apg" not in guidance
    # in-process registrations (other tests, notebooks) stay; no third-party distribution is read
    assert {e.dist for e in registry.entries()} - {"<in-process>"} == {"tgsample"}
    with pytest.raises(UnknownNameError, match=registry.DISABLE_ENV):
        registry.get("guidance", "apg")
    monkeypatch.delenv(registry.DISABLE_ENV)
    registry.refresh()
    assert "apg" in registry.names("guidance")


# --- conflicts ------------------------------------------------------------------------------


def test_two_distributions_with_the_same_name_are_ambiguous(site):
    a, b = unique("tgs_a"), unique("tgs_b")
    make_dist(site, "tgsample-twin-a", "1.0", {"tgsample.guidance": {"twin": f"{a}:G"}}, {a: "G = object\n"})
    make_dist(site, "tgsample-twin-b", "2.0", {"tgsample.guidance": {"twin": f"{b}:G"}}, {b: "G = object\n"})
    registry.refresh()
    with pytest.raises(PluginError, match=r"'twin'.*tgsample-twin-a 1\.0.*tgsample-twin-b 2\.0"):
        registry.get("guidance", "twin")
    twins = [e for e in registry.entries("guidance") if e.name == "twin"]
    assert len(twins) == 2 and not any(e.active for e in twins)
    assert all("ambiguous" in e.conflict and "tgsample-twin-a" in e.conflict and "tgsample-twin-b" in e.conflict
               for e in twins)
    assert all(e.ambiguous for e in twins)  # state, not a sentence to parse
    assert a not in sys.modules and b not in sys.modules


def test_a_plugin_cannot_silently_replace_a_builtin(site, capsys):
    fake = unique("tgs_fake")
    make_dist(site, "tgsample-hijack", "0.1", {"tgsample.guidance": {"cfg": f"{fake}:CFG"}}, {fake: "CFG = object\n"})
    registry.refresh()
    from tgsample.guidance import CFG

    with pytest.warns(registry.PluginConflictWarning, match=r"'cfg'.*tgsample-hijack 0\.1"):
        assert registry.get("guidance", "cfg") is CFG
    cfgs = {e.dist: e for e in registry.entries("guidance") if e.name == "cfg"}
    assert cfgs["tgsample"].active and not cfgs["tgsample-hijack"].active
    assert "built-in wins" in cfgs["tgsample-hijack"].conflict
    listing.main(["guidance", "--pattern", "cfg"])
    assert "built-in wins over tgsample-hijack 0.1" in capsys.readouterr().out


def test_in_process_register_needs_override_for_a_taken_name():
    from tgsample.guidance import CFG

    class Louder(CFG):
        pass

    with pytest.raises(ConfigError, match=r"'cfg' is already registered by tgsample.*override=True"):
        registry.register("guidance", "cfg", Louder)
    with pytest.raises(ConfigError, match=r"'apg' is already registered by tgsample-apg"):
        registry.register("guidance", "apg", Louder)
    registry.register("guidance", "cfg", Louder, override=True)
    try:
        assert registry.get("guidance", "cfg") is Louder
        [local] = [e for e in registry.entries("guidance") if e.name == "cfg" and e.active]
        assert local.dist == registry.IN_PROCESS
    finally:
        registry.unregister("guidance", "cfg")
    assert registry.get("guidance", "cfg") is CFG


def test_register_as_decorator_and_conformance():
    from tgsample.guidance import Estimate, Guidance

    @registry.register("guidance", "halfway")
    class Halfway(Guidance):
        def __call__(self, model, x, sigma, ctx):
            return Estimate.same(model(x, sigma, **ctx.cond) / 2)

    try:
        assert registry.create("guidance", "halfway").__class__ is Halfway
        assert "halfway" in registry.names("guidance")
        with pytest.raises(ConfigError, match="already registered"):
            registry.register("guidance", "halfway")(Halfway)
    finally:
        registry.unregister("guidance", "halfway")
    with pytest.raises(PluginError, match="not callable"):
        registry.register("solvers", "oops", 42)
    assert "oops" not in registry.names("solvers")


# --- kinds ----------------------------------------------------------------------------------


def test_every_kind_is_a_spec_supplied_by_the_kind():
    """Discovery, precedence, isolation and caching are shared; each kind says what it accepts and how it builds."""
    assert set(registry.KINDS) == {"guidance", "solvers", "schedules", "students", "teachers", "recipes"}
    for kind in registry.KINDS:
        spec = registry.kind_spec(kind)
        assert spec.name == kind and spec.expects
    assert registry.kind_spec("recipes").build == "as_is" and registry.kind_spec("solvers").build == "bind"
    with pytest.raises(PluginError, match=r"'bad' = x:y.*dict mapping variant suffixes"):
        registry.kind_spec("recipes").check(["not", "a", "dict"], "recipes 'bad' = x:y")
    with pytest.raises(ConfigError, match="takes no options"):
        registry.create("recipes", "digits", extra=1)


def test_a_new_kind_gets_discovery_conflicts_and_listing_for_free():
    code = textwrap.dedent("""
        from tgsample import registry
        from tgsample.errors import PluginError
        def conform(obj, label):
            if not isinstance(obj, int):
                raise PluginError(f"{label} is not an int")
        registry.register_kind(registry.Kind("widgets", "an int", conform=conform, build="as_is"))
        registry.register("widgets", "three", 3)
        try:
            registry.register("widgets", "bad", "x")
        except PluginError as exc:
            print("refused:", exc)
        print(registry.get("widgets", "three"), registry.names("widgets"), registry.group("widgets"))
        print([(e.name, e.kind) for e in registry.entries("widgets")])
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True).stdout
    assert "refused: widgets 'bad'" in out and "is not an int" in out
    assert "3 ['three'] tgsample.widgets" in out and "[('three', 'widgets')]" in out


# --- lookup ---------------------------------------------------------------------------------


def test_unknown_name_lists_what_exists_and_suggests_close_matches():
    with pytest.raises(UnknownNameError) as info:
        registry.get("solvers", "eulr")
    msg = str(info.value)
    assert "did you mean 'euler'" in msg and "dpmpp_2m" in msg and "k_heun" in msg
    assert isinstance(info.value, KeyError)
    with pytest.raises(UnknownNameError, match="did you mean 'cfg', 'cfgpp'"):
        registry.create("guidance", "cfg++")
    with pytest.raises(UnknownNameError, match=r"unknown registry kind 'solver'; did you mean 'solvers'"):
        registry.names("solver")


def test_create_builds_binds_or_passes_through():
    from tgsample.guidance import CFG

    g = CFG(3.0)
    assert registry.create("guidance", g) is g
    with pytest.raises(ConfigError, match="already-built"):
        registry.create("guidance", g, scale=2.0)
    with pytest.raises(ConfigError, match=r"'scal' \(did you mean 'scale'\?\).*options are: scale"):
        registry.create("guidance", "cfg", scal=2.0)
    euler = registry.get("solvers", "euler")
    assert registry.create("solvers", "euler") is euler
    bound = registry.create("schedules", "karras", rho=5.0)
    assert isinstance(bound, functools.partial) and bound.keywords == {"rho": 5.0}
    with pytest.raises(ConfigError, match="'rhoo'"):
        registry.create("schedules", "karras", rhoo=5.0)
    with pytest.raises(ConfigError, match="must be a string"):
        registry.get("guidance", 3)
