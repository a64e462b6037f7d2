"""`import tgsample` and its public API stay light: no diffusers, k-diffusion, lightning or transformers."""

import subprocess
import sys

HEAVY = ("diffusers", "k_diffusion", "lightning", "transformers", "sklearn")


def test_public_api_imports_nothing_heavy():
    code = ("import sys, tgsample\n"
            "for name in tgsample.__all__: getattr(tgsample, name)\n"
            f"print(','.join(m for m in {HEAVY!r} if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True).stdout.strip()
    assert out == "", f"import tgsample pulled in: {out}"


def test_bare_import_does_not_even_import_torch():
    code = "import sys, tgsample; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True).stdout.strip()
    assert out == "False"


def _loaded(code: str, modules: tuple) -> str:
    code = f"import sys\n{code}\nprint('loaded:' + ','.join(m for m in {modules!r} if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True).stdout
    return out.strip().splitlines()[-1].removeprefix("loaded:")


def test_recipes_and_presets_do_not_import_torch():
    """Recipes and the presets derived from them are plain data: reading every one imports no torch."""
    code = ("import tgsample.recipes, tgsample.presets as P\n"
            "assert P.get('digits-compact++').recipe.teacher == 'digits' and len(P.names()) >= 28")
    assert _loaded(code, ("torch", "tgsample.models.base", "tgsample.guidance", *HEAVY)) == ""


def test_listing_presets_does_not_import_torch():
    code = "from tgsample import listing\nlisting.main(['presets'])\nlisting.main([])"
    assert _loaded(code, ("torch", *HEAVY)) == ""


def test_schedules_do_not_load_solvers_or_guidance():
    assert _loaded("import tgsample.schedules", ("tgsample.solvers", "tgsample.guidance", "k_diffusion")) == ""
