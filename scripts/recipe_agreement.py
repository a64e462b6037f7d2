#!/usr/bin/env python
"""``tgsample.sample`` and ``tgsample generate`` on the same recipe: same pixels, same accuracy.

For each digit student and recipe (``""`` and ``"++"``) draws ``--n`` samples (label ``i mod 10``,
seed ``i``) once through ``tgsample.sample(student, cond, seeds=..., recipe=...)`` with no other
option, and once through ``tgsample generate --model.preset NAME`` (latents saved); prints the
classifier's accuracy of each and whether the two agree bit for bit. ``sample()`` is called one
sample at a time, as ``generate`` samples by default (``batch_invariant``: a batched CPU conv
differs in the last bits from the same sample alone)::

    python scripts/recipe_agreement.py              # n = 1000
    python scripts/recipe_agreement.py --n 100      # quicker
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--n", type=int, default=1000, help="samples per configuration (default 1000)")
    p.add_argument("--students", default="digits,digits-compact")
    p.add_argument("--threads", type=int, default=1)
    a = p.parse_args(argv)

    import torch
    from safetensors.torch import load_file

    import tgsample
    from tgsample import registry
    from tgsample.lightning.cli import main as generate
    from tgsample.models.digits.classifier import load_classifier

    torch.set_num_threads(a.threads)
    clf = load_classifier()
    labels = [i % 10 for i in range(a.n)]
    print(f"| preset | acc, sample() | acc, tgsample generate | same latents |\n|---|---|---|---|")
    for name in a.students.split(","):
        student = registry.create("students", name)
        cond, uncond = student.encode(labels, None)
        y = cond["class_labels"]
        for variant in ("", "++"):
            api = torch.cat([tgsample.sample(student, {k: v[i:i + 1] for k, v in cond.items()},
                                             uncond={k: v[i:i + 1] for k, v in uncond.items()}, seeds=[i],
                                             recipe=variant) for i in range(a.n)])
            with tempfile.TemporaryDirectory() as tmp:
                prompts = Path(tmp) / "p.jsonl"
                prompts.write_text("".join(json.dumps({"class": c, "seed": i}) + "\n" for i, c in enumerate(labels)))
                rc = generate(["--model.preset", name + variant, "--data.prompt_file", str(prompts),
                               "--data.batch_size", "50", "--output.dir", str(Path(tmp) / "out"),
                               "--output.latents", "true", "--output.preview", "0",
                               "--trainer.accelerator", "cpu", "--trainer.enable_progress_bar", "false"])
                assert rc == 0, rc
                entries = [json.loads(line) for line in (Path(tmp) / "out" / "manifest.jsonl").read_text().splitlines()]
                cli = torch.stack([load_file(str(Path(tmp) / "out" / e["latent"]))["x"] for e in entries])
            with torch.no_grad():
                acc_api = float((clf(api).argmax(1) == y).float().mean())
                acc_cli = float((clf(cli).argmax(1) == y).float().mean())
            print(f"| {name + variant} | {acc_api:.3f} | {acc_cli:.3f} | {torch.equal(api, cli)} |", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
