"""The workload schema: defaults, strict validation with clear messages, overrides."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pytest_basht import workload as wl
from pytest_basht import workload_files
from pytest_basht.errors import WorkloadError


def load_text(tmp_path: Path, text: str, name: str = "w.yaml") -> wl.Workload:
    path = tmp_path / name
    path.write_text(text)
    return wl.load(path)


def error_of(tmp_path: Path, text: str, name: str = "w.yaml") -> WorkloadError:
    with pytest.raises(WorkloadError) as info:
        load_text(tmp_path, text, name)
    return info.value


@pytest.mark.parametrize("text", ["", "\n", "# nothing yet\n", "---\n", "null\n", "~", "{}"])
def test_an_empty_workload_file_is_refused(tmp_path, text):
    """Empty is far more often a cut or a wrong file than a choice (issue 20): refused, with
    the way to the baseline named."""
    err = error_of(tmp_path, text)
    assert err.key == "<document>" and "an empty workload file is refused" in str(err)
    assert "workloads/baseline.yaml" in str(err)
    assert "at least one key" in str(error_of(tmp_path, "{}", "w.json"))


def test_the_defaults_are_the_basht_baseline(tmp_path):
    w = load_text(tmp_path, "name: baseline\n")
    assert (w.workers.count, w.workers.cpu, w.workers.memory_mb) == (4, 2, 2048)
    assert w.search.sampler == "grid" and w.search.pruner == "none"
    assert w.search.size == 16 and w.trial_budget == 16
    assert w.training.epochs == 5 and w.training.batch_size == 64
    assert w.energy.carbon_intensity == 475 and w.energy.pue == 1.0


def test_shipped_baseline_matches_the_issue(tmp_path):
    w = wl.load(Path(__file__).parents[1] / "workloads" / "baseline.yaml")
    assert [d.name for d in w.search.space] == ["layer_size", "layer_count", "learning_rate",
                                                "weight_decay"]
    assert w.search.size == 16 and w.goal.target == 0.9
    assert w.dataset.source == "embedded" and w.workers.accelerator == "cpu"


def test_misspelt_key_names_file_key_and_suggestion(tmp_path):
    err = error_of(tmp_path, "workers:\n  cout: 2\n")
    text = str(err)
    assert "w.yaml" in text and "workers.cout" in text and "did you mean 'count'" in text


def test_wrong_type_names_expected(tmp_path):
    err = error_of(tmp_path, "workers: {count: two}\n")
    assert err.key == "workers.count" and "an integer" in str(err) and "'two'" in str(err)


def test_bool_is_not_an_integer(tmp_path):
    assert error_of(tmp_path, "workers: {count: true}\n").key == "workers.count"


@pytest.mark.parametrize("text,key", [
    ("workers: {count: 0}", "workers.count"),
    ("workers: {cpu: -1}", "workers.cpu"),
    ("training: {epochs: 0}", "training.epochs"),
    ("search: {trials: 0}", "search.trials"),
    ("energy: {pue: 0.5}", "energy.pue"),
    ("energy: {zeus_eta: 2}", "energy.zeus_eta"),
    ("dataset: {train: 1.5}", "dataset.train"),
])
def test_out_of_range_values(tmp_path, text, key):
    assert error_of(tmp_path, text).key == key


def test_empty_space_and_empty_dimension(tmp_path):
    assert error_of(tmp_path, "search: {space: {}}").key == "search.space"
    assert error_of(tmp_path, "search: {space: {lr: []}}").key == "search.space.lr"


def test_grid_over_continuous_dimension_is_refused(tmp_path):
    err = error_of(tmp_path, "search: {space: {learning_rate: {low: 0.0001, high: 0.1, "
                             "log: true}}}")
    assert err.key == "search.space.learning_rate" and "grid" in str(err)


def test_continuous_space_needs_a_budget(tmp_path):
    text = "search: {sampler: tpe, space: {learning_rate: {low: 0.0001, high: 0.1, log: true}}}"
    assert error_of(tmp_path, text).key == "search.trials"
    w = load_text(tmp_path, text.replace("tpe,", "tpe, trials: 7,"))
    assert w.search.size is None and w.trial_budget == 7


def test_ranges_enumerate_for_the_grid(tmp_path):
    w = load_text(tmp_path, "search: {space: {layer_count: {low: 1, high: 3}, "
                            "learning_rate: {low: 0.1, high: 0.3, step: 0.1}}}")
    dims = {d.name: d for d in w.search.space}
    assert dims["layer_count"].grid_values() == [1, 2, 3]
    assert dims["learning_rate"].grid_values() == [0.1, 0.2, 0.3]
    assert w.search.size == 9


def test_range_errors(tmp_path):
    assert error_of(tmp_path, "search: {space: {x: {low: 2, high: 1}}}").key \
        == "search.space.x.high"
    assert error_of(tmp_path, "search: {space: {x: {low: 0, high: 1, log: true}}}").key \
        == "search.space.x.low"
    assert error_of(tmp_path, "search: {space: {x: {low: 0, hgh: 1}}}").key == "search.space.x.hgh"


def test_literal_choices_suggest(tmp_path):
    err = error_of(tmp_path, "goal: {direction: maximise}")
    assert err.key == "goal.direction" and "did you mean 'maximize'" in str(err)


def test_splits_must_sum_to_one(tmp_path):
    assert error_of(tmp_path, "dataset: {train: 0.5, validation: 0.2, test: 0.2}").key == "dataset"


def test_yaml_syntax_error_names_line(tmp_path):
    err = error_of(tmp_path, "workers: {count: 2\nname: x\n")
    assert err.key == "<document>" and "line" in str(err)


def test_yaml_object_tags_are_refused(tmp_path):
    err = error_of(tmp_path, "name: !!python/object/apply:os.system ['echo hi']\n")
    assert "valid YAML" in str(err)


def test_alias_bomb_is_refused_quickly(tmp_path):
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    for i in range(1, 12):
        prev = f"*a{i - 1}"
        lines.append(f"a{i}: &a{i} [{', '.join([prev] * 10)}]")
    err = error_of(tmp_path, "\n".join(lines) + "\n")
    assert "aliases" in str(err)


def test_oversized_document_is_refused(tmp_path):
    err = error_of(tmp_path, "description: '" + "x" * (workload_files.MAX_BYTES + 10) + "'\n")
    assert "bytes" in str(err)


def test_json_workloads(tmp_path):
    w = load_text(tmp_path, json.dumps({"workers": {"count": 2}}), "w.json")
    assert w.workers.count == 2
    assert "valid JSON" in str(error_of(tmp_path, "{nope", "bad.json"))


def test_extends_merges_and_replaces_the_space(tmp_path):
    (tmp_path / "base.yaml").write_text("name: base\nworkers: {count: 4, cpu: 2}\n"
                                        "search: {space: {layer_size: [8, 16], "
                                        "learning_rate: [0.1]}}\n")
    w = load_text(tmp_path, "extends: base.yaml\nworkers: {count: 1}\n"
                            "search: {space: {layer_size: [4]}}\n")
    assert w.name == "base" and w.workers.count == 1 and w.workers.cpu == 2
    assert [d.name for d in w.search.space] == ["layer_size"]


def test_extends_cycle_and_urls_are_refused(tmp_path):
    (tmp_path / "a.yaml").write_text("extends: b.yaml\n")
    (tmp_path / "b.yaml").write_text("extends: a.yaml\n")
    with pytest.raises(WorkloadError, match="cycle"):
        wl.load(tmp_path / "a.yaml")
    assert error_of(tmp_path, "extends: http://example.com/w.yaml").key == "extends"


def test_overrides_by_dotted_path(tmp_path):
    base = load_text(tmp_path, "workers: {count: 4}")
    w = wl.resolve(base, {"workers.count": 2, "search.pruner": "median"})
    assert w.workers.count == 2 and w.search.pruner == "median"
    with pytest.raises(WorkloadError) as info:
        wl.resolve(base, {"workers.count": 0})
    assert "workers.count=0" in str(info.value) and info.value.key == "workers.count"


def test_unreadable_and_wrong_suffix(tmp_path):
    with pytest.raises(WorkloadError, match="readable"):
        wl.load(tmp_path / "missing.yaml")
    assert error_of(tmp_path, "x: 1", "w.txt").key == "<file>"


def test_to_dict_round_trips(tmp_path):
    w = wl.load(Path(__file__).parents[1] / "workloads" / "baseline.yaml")
    again = wl.from_mapping(w.to_dict(), "again")
    assert again == w


def test_every_schema_key_is_documented():
    doc = (Path(__file__).parents[1] / "docs" / "workload.md").read_text()
    missing = [k for k in wl.schema_keys() if f"`{k}`" not in doc]
    assert not missing, f"docs/workload.md lacks {missing}"


def test_every_problem_of_a_file_is_reported_at_once(tmp_path):
    err = error_of(tmp_path, "workers:\n  cout: 2\n  cpu: many\ntraining: {epochs: -1}\n"
                             "goal: {direction: up}\nsearch: {space: {x: []}}\n")
    lines = str(err).splitlines()
    where = f"{tmp_path / 'w.yaml'}: "
    assert sorted(p.key for p in err.problems) == ["goal.direction", "search.space.x",
                                                   "training.epochs", "workers.cout",
                                                   "workers.cpu"]
    assert lines[0] == err.line and lines[0].startswith(where + "training.epochs: expected ")
    assert lines[1] == "and 4 more problem(s) found with it:"
    assert lines[2:] == [f"  {p.line}" for p in err.more]
    assert all(line.startswith("  " + where) and ": expected " in line for line in lines[2:])
    assert any(line.endswith("got 'many'") for line in lines[2:])
    # relabelled for overrides, every problem keeps its key
    again = wl.resolve(load_text(tmp_path, "name: baseline\n"), {})
    with pytest.raises(WorkloadError) as info:
        wl.resolve(again, {"workers.count": 0, "training.epochs": 0})
    assert len(info.value.problems) == 2 and "(with workers.count=0" in str(info.value)


def test_table1_leaves_out_what_the_trainable_does_not_read():
    w = wl.from_mapping({})
    every = w.table1()
    assert [r[0] for r in every[:4]] == ["t", "ts", "m", "ta"]
    assert ("", "epochs × batch size", "5 × 64") in every and w.table1(None) == every
    bare = w.table1(frozenset())
    assert not {"t", "ts", "ta"} & {r[0] for r in bare}
    assert ("", "epochs", 5) in bare and all("batch" not in r[1] for r in bare)
    assert {r[0] for r in w.table1({"dataset"})} >= {"t", "ts"}
