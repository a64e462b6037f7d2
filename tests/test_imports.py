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
