"""`tgsample bench mini` (the pre-registered tables on the miniature) and the metrics it adds: k-NN precision /
recall and the memorisation rate."""

import json
import math

import numpy as np
import pytest
import torch
import yaml

from tgsample.bench import mini as B
from tgsample.errors import ConfigError
from tgsample.eval.metrics import knn_precision_recall, memorisation_rate
from tgsample.eval.stats import holm


def test_knn_precision_recall_closed_forms():
    rng = np.random.default_rng(0)
    real = rng.normal(size=(300, 8))
    same = knn_precision_recall(real, real, k=3)
    assert same == {"precision": 1.0, "recall": 1.0}  # every point lies in its own ball
    far = knn_precision_recall(real + 100.0, real, k=3)
    assert far == {"precision": 0.0, "recall": 0.0}
    # a mode-collapsed sample: every point near the origin -> faithful (precision high) but not diverse
    collapsed = knn_precision_recall(rng.normal(size=(300, 8)) * 0.05, real, k=3)
    assert collapsed["precision"] > 0.9 and collapsed["recall"] < 0.1, collapsed
    with pytest.raises(ConfigError, match="k=3"):
        knn_precision_recall(real[:3], real, k=3)


def test_memorisation_rate_counts_copies_only():
    gen = torch.Generator().manual_seed(0)
    train = torch.rand(200, 28, 28, generator=gen)
    copies = train[:50] + 0.01 * torch.randn(50, 28, 28, generator=gen)
    novel = torch.rand(50, 28, 28, generator=gen)
    assert memorisation_rate(copies, train) == 1.0
    assert memorisation_rate(novel, train) == 0.0
    assert memorisation_rate(torch.cat([copies[:10], novel[:30]]), train) == 0.25
    with pytest.raises(ConfigError, match="at least 2"):
        memorisation_rate(novel, train[:1])


def test_the_shipped_plan_is_complete_and_checked(tmp_path):
    plan = B.load_plan()
    assert plan["replicates"] >= 10 and set(plan["renoise"]) == {"next", "current", "random", "random_sigma"}
    assert plan["tune"]["seed"] >= plan["seed"] + plan["replicates"] * 40 * plan["per_caption"]  # disjoint seeds
    bad = tmp_path / "plan.yaml"
    bad.write_text(yaml.safe_dump({**plan, "replicates": 1}))
    with pytest.raises(ConfigError, match="replicates=1"):
        B.load_plan(bad)
    bad.write_text(yaml.safe_dump({k: v for k, v in plan.items() if k != "lams"}))
    with pytest.raises(ConfigError, match="lams"):
        B.load_plan(bad)
    with pytest.raises(ConfigError, match="is not a file"):
        B.load_plan(tmp_path / "missing.yaml")


def _fake(plan, deltas):
    """A result whose `run` differs from `plain` by `deltas[r]` in alignment on replicate r."""
    plain = [{"alignment": 0.8, "fd": 100.0, "time": 1.0} for _ in deltas]
    run = [{"alignment": 0.8 + d, "fd": 100.0 - 10 * d, "time": 1.0} for d in deltas]
    rows = [{"table": "main", "label": "run vs plain", "run": "run", "base": "plain", "metrics": ["alignment", "fd"]}]
    return {"plan": plan, "students": {"s": {"results": {"plain": plain, "run": run}, "rows": rows}}}


def test_analysis_is_the_paired_t_test_with_holm_over_the_page():
    from scipy.stats import ttest_1samp

    plan = B.load_plan()
    deltas = [0.05, 0.06, 0.04, 0.05, 0.07, 0.03, 0.05, 0.06, 0.04, 0.05]
    v = B.analyse(_fake(plan, deltas))
    p = ttest_1samp(deltas, 0).pvalue
    assert [x["metric"] for x in v] == ["alignment", "fd"]
    assert v[0]["mean"] == pytest.approx(np.mean(deltas)) and v[0]["p"] == pytest.approx(p)
    assert [x["p_holm"] for x in v] == pytest.approx(holm([x["p"] for x in v]))
    assert [x["verdict"] for x in v] == ["better", "better"]  # higher alignment, lower FD
    noisy = B.analyse(_fake(plan, [0.05, -0.05, 0.04, -0.04, 0.01, -0.01, 0.02, -0.02, 0.0, 0.0]))
    assert {x["verdict"] for x in noisy} == {"no clear difference"}
    assert B.verdict(-1.0, 0.001, "fd", 0.05) == "better" and B.verdict(-1.0, 0.001, "alignment", 0.05) == "worse"


def test_tuning_rule_on_the_first_tuning_run():
    # mini-lcm's plain steps on the tuning seeds (docs/results.md): 3 and 4 steps are within 0.01 of the best,
    # 3 has the lower FD; over 1-6 steps, 5 is the best and 6 within 0.01 with a lower FD
    runs = {1: (0.650, 346.5), 2: (0.845, 350.2), 3: (0.882, 389.3), 4: (0.880, 399.3), 5: (0.892, 375.7),
            6: (0.890, 368.6)}
    scores = {k: {"alignment": a, "fd": f} for k, (a, f) in runs.items()}
    assert B.tuned({k: scores[k] for k in (1, 2, 3, 4)}, 0.01) == 3
    assert B.tuned(scores, 0.01) == 6
    assert B.tuned(scores, 0.0) == 5


def test_equal_time_base_is_the_best_plain_run_within_the_time():
    plan = {**B.load_plan(), "plain_steps": [1, 2, 3]}
    res = {"guided": [{"time": 2.0}], "plain1": [{"time": 1.0, "alignment": 0.7, "fd": 9.0}],
           "plain2": [{"time": 1.9, "alignment": 0.5, "fd": 8.0}], "plain3": [{"time": 2.5, "alignment": 0.9, "fd": 1.0}]}
    assert B.equal_time_base(res, "guided", plan) == "plain1"  # the best within the time, not the slowest
    tie = {**res, "plain2": [{"time": 1.9, "alignment": 0.7, "fd": 8.0}]}
    assert B.equal_time_base(tie, "guided", plan) == "plain2"  # equal alignment: the lower FD
    assert B.equal_time_base({**res, "guided": [{"time": 0.5}]}, "guided", plan) is None


@pytest.fixture()
def tiny_plan(tmp_path):
    plan = {**B.load_plan(), "students": ["mini-lcm-lora"], "replicates": 2, "per_caption": 1, "plain_steps": [2, 3, 4],
            "renoise": ["next", "random"], "guided_steps": [[0], [1]], "lams": {"eps": [0.05, 0.3], "x0": [1.0]},
            "teacher_cfgs": [4], "solvers": {"lcm": ["euler"]}, "teacher_ceiling": {"steps": 3}}
    path = tmp_path / "plan.yaml"
    path.write_text(yaml.safe_dump(plan))
    return path


def test_bench_runs_the_plan_end_to_end(tiny_plan, tmp_path, capsys):
    from tgsample.cli import main

    out = tmp_path / "bench"
    assert main(["bench", "mini", "--plan", str(tiny_plan), "--threads", "1", "--out", str(out)]) == 0
    result = json.loads((out / "mini.json").read_text())
    s = result["students"]["mini-lcm-lora"]
    res = s["results"]
    assert result["n"] == 40 and all(len(res[k]) == 2 for k in res)
    # aliases: a sweep value equal to the published recipe is the published run, scored once
    assert res["lam0.05"] == res["guided"] == res["renoise_next"] == res["guided_at_0"] == res["tcfg4"]
    assert res["plain3"] == res["plain"] and res["lam0.3"] != res["guided"]
    first = res["plain"][0]
    assert set(first) >= {"alignment", "alignment_in", "alignment_heldout", "fd", "precision", "recall",
                          "memorisation", "time"}
    assert first["alignment"] == pytest.approx((30 * first["alignment_in"] + 10 * first["alignment_heldout"]) / 40)
    assert res["teacher"] == result["teacher"]["results"]
    real = result["real"]  # the floor; the memorisation test finds the training images and only them
    assert real["heldout_memorisation"] < 0.02 and real["in_training_set"] == pytest.approx(2980 / 4000)
    assert abs(np.mean([r["memorisation"] for r in real["results"]]) - real["in_training_set"]) < 0.2
    verdicts = result["verdicts"]
    # 'guided vs N plain' is in several tables, and 'lam 0.05 vs N plain' is the same comparison: one test each
    family = {v["test"]: v["p"] for v in verdicts}
    assert len(family) == B.family_size(verdicts) < len(verdicts)
    same = [v for v in verdicts if v["label"] in ("guided vs N plain", "lam 0.05 vs N plain")]
    assert len(same) == 4 and len({v["test"] for v in same}) == 2  # alignment and FD
    adj = holm([family[k] for k in range(len(family))])
    assert all(math.isclose(v["p_holm"], adj[v["test"]]) for v in verdicts)
    assert f"Holm-adjusted over all {len(family)} distinct" in (out / "mini.md").read_text()
    md = (out / "mini.md").read_text()
    assert "### mini-lcm-lora" in md and "renoise random vs next" in md and "equal wall time" in md
    assert "Holm-adjusted over all" in capsys.readouterr().out
    again = tmp_path / "again"  # the page again from the saved results, nothing sampled
    assert main(["bench", "mini", "--report", str(out / "mini.json"), "--out", str(again)]) == 0
    assert (again / "mini.md").read_text() == md


def test_bench_refuses_bad_options_before_writing(tiny_plan, tmp_path, capsys):
    from tgsample.cli import main

    out = tmp_path / "never"
    assert main(["bench", "mini", "--plan", str(tiny_plan), "--students", "mini-lcm", "--out", str(out)]) == 2
    assert "not in the plan's" in capsys.readouterr().err and not out.exists()
    assert main(["bench", "mini", "--plan", str(tiny_plan), "--replicates", "1", "--out", str(out)]) == 2
    assert not out.exists()
