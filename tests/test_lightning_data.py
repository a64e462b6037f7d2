"""Generation records: formats, stable ids, bad input; presets; sharding."""

from __future__ import annotations

import json

import pytest

from tgsample import presets
from tgsample.errors import ConfigError, UnknownNameError
from tgsample.lightning.data import Record, build_records, read_records, shard


def test_prompts_x_seeds_have_stable_ids():
    recs = build_records(["a cat", "a dog"], seeds=[5, 7])
    assert [(r.id, r.prompt, r.seed) for r in recs] == [
        ("000000-5", "a cat", 5), ("000000-7", "a cat", 7), ("000001-5", "a dog", 5), ("000001-7", "a dog", 7)]
    assert build_records(["a cat", "a dog"], seeds=[5, 7]) == recs  # same input, same records
    assert [r.seed for r in build_records([3], seeds=3)] == [0, 1, 2]


def test_txt_csv_jsonl(tmp_path):
    (tmp_path / "p.txt").write_text("a red car\n\n  a blue bird\n")
    txt = read_records(tmp_path / "p.txt", seeds=[1])
    assert [(r.id, r.prompt) for r in txt] == [("000000-1", "a red car"), ("000001-1", "  a blue bird")]

    (tmp_path / "p.csv").write_text('id,prompt,negative,seed,overrides\nx1,a cat,blurry,4,"{""steps"": 2}"\n,a dog,,,\n')
    csv = read_records(tmp_path / "p.csv", seeds=[0, 1])
    assert csv[0] == Record("x1", "a cat", 4, "blurry", {"steps": 2})
    assert [r.id for r in csv[1:]] == ["000001-0", "000001-1"] and csv[1].negative is None

    lines = [{"id": "k", "class": 3, "seed": 9, "overrides": {"solver": "lcm"}}, {"prompt": "x", "negative_prompt": "y"}]
    (tmp_path / "p.jsonl").write_text("\n".join(json.dumps(x) for x in lines) + "\n")
    js = read_records(tmp_path / "p.jsonl", seeds=2)
    assert js[0] == Record("k", 3, 9, None, {"solver": "lcm"})
    assert [(r.id, r.negative) for r in js[1:]] == [("000001-0", "y"), ("000001-1", "y")]


@pytest.mark.parametrize("name,text", [("empty.txt", "\n \n"), ("empty.jsonl", ""), ("empty.csv", "prompt\n")])
def test_empty_prompt_file(tmp_path, name, text):
    (tmp_path / name).write_text(text)
    with pytest.raises(ConfigError, match="is empty"):
        read_records(tmp_path / name)


def test_malformed_jsonl_names_the_line(tmp_path):
    (tmp_path / "p.jsonl").write_text('{"prompt": "a"}\n\n{"prompt": "b",\n')
    with pytest.raises(ConfigError, match=r"p\.jsonl:3: line 3 is not valid JSON"):
        read_records(tmp_path / "p.jsonl")
    (tmp_path / "q.jsonl").write_text('{"prompt": "a", "sede": 1}\n')
    with pytest.raises(ConfigError, match=r"q\.jsonl:1: unknown key\(s\) \['sede'\]; allowed: id, prompt"):
        read_records(tmp_path / "q.jsonl")
    (tmp_path / "r.jsonl").write_text('{"prompt": "a", "overrides": {"student": "x"}}\n')
    with pytest.raises(ConfigError, match=r"cannot override \['student'\]; a record may override: guidance"):
        read_records(tmp_path / "r.jsonl")


def test_duplicate_ids(tmp_path):
    (tmp_path / "p.jsonl").write_text('{"id": "a", "prompt": "x", "seed": 1}\n{"id": "a", "prompt": "y", "seed": 2}\n')
    with pytest.raises(ConfigError, match=r"duplicate id\(s\) 'a' \(records 0 and 1\)"):
        read_records(tmp_path / "p.jsonl")
    with pytest.raises(ConfigError, match="duplicate id"):
        build_records([{"id": "z", "prompt": 1}], seeds=[1, 1])


def test_bad_ids_seeds_and_formats(tmp_path):
    with pytest.raises(ConfigError, match=r"id '\.\./x' is not allowed"):
        build_records([{"id": "../x", "prompt": 1, "seed": 0}])
    with pytest.raises(ConfigError, match="seed 'abc' is not an integer"):
        build_records([{"prompt": 1, "seed": "abc"}])
    with pytest.raises(ConfigError, match="unknown format '.yaml'; use one of .txt, .jsonl, .csv"):
        read_records(tmp_path / "p.yaml")
    with pytest.raises(ConfigError, match="does not exist"):
        read_records(tmp_path / "missing.txt")


def test_shard_is_strided_exactly_once():
    items = list(range(13))
    shards = [shard(items, r, 2) for r in range(2)]
    assert shards == [[0, 2, 4, 6, 8, 10, 12], [1, 3, 5, 7, 9, 11]]
    assert shard([0], 1, 2) == []  # fewer records than ranks: that rank is idle
    assert sorted(sum((shard(items, r, 5) for r in range(5)), [])) == items


def test_presets():
    """Presets are the students' published recipes; explicit settings override them field by field."""
    from tgsample.lightning.module import GenerationModule

    assert {"digits", "digits++", "digits-compact", "digits-compact++"} <= set(presets.names())
    s = GenerationModule(preset="digits++", solver="euler").settings
    assert s["solver"] == "euler" and s["teacher"] == "digits" and s["guidance"]["name"] == "teacher"
    assert GenerationModule(preset="digits", schedule="karras", steps=3).settings["sigmas"] is None  # a schedule replaces sigmas
    s["guidance"]["lam"] = 1.0
    assert presets.get("digits++").recipe.guidance["lam"] != 1.0  # settings are copies
    with pytest.raises(UnknownNameError, match=r"unknown preset 'digit\+\+'; did you mean .*Available presets: digits"):
        presets.get("digit++")


def test_a_non_utf8_prompt_file_names_the_file_and_line(tmp_path):
    for name, text in (("p.txt", b"a cat\nna\xefve caf\xe9\n"), ("p.jsonl", b'{"prompt": "a"}\n{"prompt": "caf\xe9"}\n'),
                       ("p.csv", b"prompt\na cat\ncaf\xe9\n")):
        (tmp_path / name).write_bytes(text)
        line = 3 if name == "p.csv" else 2
        with pytest.raises(ConfigError, match=rf"{name}:{line}: line {line} is not UTF-8 text \(byte 0x"):
            read_records(tmp_path / name)
    (tmp_path / "bom.txt").write_bytes(b"\xef\xbb\xbfa cat\n")  # a UTF-8 byte-order mark is not part of the prompt
    assert read_records(tmp_path / "bom.txt")[0].prompt == "a cat"


def test_ids_seeds_and_sizes_are_checked_not_coerced():
    with pytest.raises(ConfigError, match=r"id 'x\\n' is not allowed"):  # re.match's $ would accept it
        build_records([{"id": "x\n", "prompt": 1, "seed": 0}])
    for bad in (1.5, True, "1.5"):
        with pytest.raises(ConfigError, match="is not an integer"):
            build_records([{"prompt": 1, "seed": bad}])
    for bad in (1.5, True, "1.5", None):
        with pytest.raises(ConfigError, match="is not an integer"):
            build_records([1], seeds=[bad])
    assert [r.seed for r in build_records([{"prompt": 1, "seed": "12"}])] == [12]  # CSV cells are text
    with pytest.raises(ConfigError, match=r"more than 10,000,000 records \(300,000,000\)"):
        build_records([1], seeds=300_000_000)  # refused before a list of that size exists
    with pytest.raises(ConfigError, match="is a string"):
        build_records("0123")


def test_sample_refuses_seeds_that_are_not_integers():
    import torch

    import tgsample
    from tgsample import CallableDenoiser

    model = CallableDenoiser(lambda x, sigma: x * 0, sample_shape=(2,))
    for bad in ([1.5], [True], ["3"]):
        with pytest.raises(ConfigError, match=r"seeds\[0\] .* is not an integer"):
            tgsample.sample(model, seeds=bad, sigmas=torch.tensor([1.0, 0.0]))
    assert tgsample.sample(model, seeds=torch.arange(2), sigmas=torch.tensor([1.0, 0.0])).shape == (2, 2)


def test_data_module_checks_its_numbers():
    from tgsample.lightning.data import GenerationData

    for kwargs in ({"num_workers": -1}, {"batch_size": 0}, {"batch_size": 2.5}, {"num_workers": True}):
        with pytest.raises(ConfigError, match="must be an integer >= "):
            GenerationData(prompts=[1], **kwargs)
    with pytest.raises(ConfigError, match="not both"):
        GenerationData(prompt_file="p.txt", prompts=[1])
