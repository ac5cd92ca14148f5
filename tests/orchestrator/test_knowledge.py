import json
import sys
from pathlib import Path
from typing import Any

import pytest

from orchestrator.domains.base import ParseFailure
from orchestrator.domains.knowledge import (
    QA,
    KnowledgeDomain,
    Passage,
    default_data,
    implications,
    load_hub,
    load_passages,
    passages_from_squad,
)
from orchestrator.errors import DataError
from student.messages import ProbeResult, StudentReport, TrainSpec

PASSAGE = Passage(
    title="Genghis Khan",
    context="The Mongol army quickly seized the town of Otrar. The Shah fled rather than surrender.",
    questions=(QA("Which town did the Mongols seize?", "Otrar"), QA("What did the Shah do?", "fled")),
)
RECORD = {"title": "T", "context": "C", "questions": [{"question": "Q?", "answer": "A"}]}


def write(tmp_path: Path, data: Any) -> Path:
    path = tmp_path / "passages.json"
    path.write_text(data if isinstance(data, str) else json.dumps(data))
    return path


# --- loading ---


def test_shipped_sample_loads() -> None:
    passages = load_passages(default_data())
    assert len(passages) == 50
    assert sum(len(p.questions) for p in passages) == 238
    assert passages[0].title == "Genghis Khan" and not passages[0].completions


def test_completions_and_extra_fields_are_read(tmp_path: Path) -> None:
    record = RECORD | {"completions": ["1. x", "2. y"], "prompt": "ignored"}
    (passage,) = load_passages(write(tmp_path, [record]))
    assert passage == Passage("T", "C", (QA("Q?", "A"),), ("1. x", "2. y"))


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ("[{", "is not valid JSON"),
        ({"title": "T"}, "expected a JSON list of passages, found dict"),
        ([], "has no passages"),
        ([RECORD, "text"], "record 1 is not a JSON object"),
        ([RECORD, {k: v for k, v in RECORD.items() if k != "title"}], "record 1: field 'title' is missing"),
        ([RECORD | {"context": 3}], "record 0: field 'context' must be a str, found int"),
        ([RECORD | {"context": "  "}], "record 0: field 'context' is empty"),
        ([RECORD | {"questions": []}], "record 0: field 'questions' is empty"),
        ([RECORD | {"questions": [{"question": "Q?"}]}], "record 0: field 'questions[0].answer' is missing"),
        ([RECORD | {"questions": ["Q?"]}], "field 'questions[0]' must be an object"),
        ([RECORD | {"completions": "1. x"}], "record 0: field 'completions' must be a list of strings"),
        ([RECORD | {"completions": ["ok", None]}], "record 0: field 'completions' must be a list of strings"),
    ],
)
def test_malformed_files_name_file_record_and_field(tmp_path: Path, data: Any, message: str) -> None:
    path = write(tmp_path, data)
    with pytest.raises(DataError) as e:
        load_passages(path)
    assert str(e.value).startswith(f"data file {path}")
    assert message in str(e.value) and "\n" not in str(e.value)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="not found"):
        load_passages(tmp_path / "nope.json")


def test_hub_rows_are_grouped_into_passages() -> None:
    rows = [  # the shape `datasets.load_dataset("rajpurkar/squad")` yields
        {"id": "1", "title": "Super_Bowl_50", "context": "c1", "question": "q1",
         "answers": {"text": ["Denver Broncos", "Broncos"], "answer_start": [177, 184]}},
        {"id": "2", "title": "Normans", "context": "c2", "question": "q2",
         "answers": {"text": ["France"], "answer_start": [0]}},
        {"id": "3", "title": "Super_Bowl_50", "context": "c1", "question": "q3",
         "answers": {"text": ["2016"], "answer_start": [9]}},
    ]  # fmt: skip
    assert passages_from_squad(rows) == [
        Passage("Super Bowl 50", "c1", (QA("q1", "Denver Broncos"), QA("q3", "2016"))),
        Passage("Normans", "c2", (QA("q2", "France"),)),
    ]


def test_hub_without_datasets_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "datasets", None)  # makes `import datasets` fail
    with pytest.raises(DataError, match=r"pip install 'seal-lm\[hub\]'"):
        load_hub()


# --- self-edit parsing ---


def test_numbered_list() -> None:
    text = "1. The Mongols took Otrar.\n2) The Shah fled.\n(3) Subutai hunted him.\n10. It took two years."
    assert implications(text, 30) == [
        "The Mongols took Otrar.",
        "The Shah fled.",
        "Subutai hunted him.",
        "It took two years.",
    ]


def test_bullets_and_implication_labels() -> None:
    text = "- Otrar fell.\n* The Shah fled.\n• Jebe pursued him.\nImplication 4: Speed mattered."
    assert implications(text, 30) == ["Otrar fell.", "The Shah fled.", "Jebe pursued him.", "Speed mattered."]


def test_numbers_that_are_not_list_marks_stay() -> None:
    assert implications("2.5 million people lived there.\n1973 saw an oil crisis.", 30) == [
        "2.5 million people lived there.",
        "1973 saw an oil crisis.",
    ]


def test_boilerplate_is_dropped() -> None:
    text = (
        "Sure, here are some implications of the passage:\n\n1. Otrar fell.\n---\n2. The Shah fled.\n\n"
        "Sources:\n1. Man, J. (2004). Genghis Khan."
    )
    assert implications(text, 30) == ["Otrar fell.", "The Shah fled.", "Man, J. (2004). Genghis Khan."]


def test_text_before_the_implications_marker_is_an_echo() -> None:
    text = "Passage:\nGenghis Khan\nThe Mongol army...\n\nImplications:\n1. Otrar fell.\n2. The Shah fled."
    assert implications(text, 30) == ["Otrar fell.", "The Shah fled."]


def test_count_is_capped() -> None:
    text = "\n".join(f"{i}. Fact number {i}." for i in range(1, 41))
    lines = implications(text, 30)
    assert len(lines) == 30 and lines[-1] == "Fact number 30."


def test_parse_edit_trains_on_each_line_then_the_passage() -> None:
    train = TrainSpec(epochs=3)
    parsed = KnowledgeDomain().parse_edit(PASSAGE, "1. Otrar fell.\n2. The Shah fled.", train)
    assert [e.completion for e in parsed.examples] == ["Otrar fell.", "The Shah fled.", PASSAGE.context]
    assert {e.prompt for e in parsed.examples} == {"Tell me about Genghis Khan."}
    assert parsed.train == train


@pytest.mark.parametrize("text", ["", "  \n\n", "1.\n2.\n---", "Implications:\n", "Sure, here they are:"])
def test_unusable_edit_is_a_parse_failure(text: str) -> None:
    with pytest.raises(ParseFailure):
        KnowledgeDomain().parse_edit(PASSAGE, text, TrainSpec())


def test_cap_is_configurable() -> None:
    parsed = KnowledgeDomain(max_implications=1).parse_edit(PASSAGE, "1. a b\n2. c d", TrainSpec())
    assert [e.completion for e in parsed.examples] == ["a b", PASSAGE.context]


# --- prompts, probes, scores ---


def test_teacher_prompt_is_a_chat_with_the_passage() -> None:
    system, user = KnowledgeDomain().teacher_prompt(PASSAGE)
    assert system["role"] == "system" and "implications" in system["content"]
    assert user == {"role": "user", "content": f"{PASSAGE.title}\n{PASSAGE.context}"}


def test_probes_ask_without_the_passage() -> None:
    domain = KnowledgeDomain()
    probes = domain.probes(PASSAGE)
    cid = domain.context_id(PASSAGE)
    assert [p.probe_id for p in probes] == [f"{cid}/q0", f"{cid}/q1"]
    assert probes[0].prompt == "Topic: Genghis Khan\nWhich town did the Mongols seize?"
    assert [p.gold for p in probes] == ["Otrar", "fled"]
    assert all(PASSAGE.context not in p.prompt and p.system for p in probes)
    assert domain.probes(PASSAGE) == probes


def test_context_id_is_stable() -> None:
    domain = KnowledgeDomain()
    assert domain.context_id(PASSAGE) == "c35d200014c3"  # journals key on it: changing it orphans runs
    other = Passage(PASSAGE.title, PASSAGE.context + " More.", PASSAGE.questions)
    assert domain.context_id(other) != domain.context_id(PASSAGE)


def report(ok: bool = True) -> StudentReport:
    results = (
        ProbeResult("a/q0", "Otrar", {"exact_match": 1.0, "f1": 1.0, "contains": 1.0}),
        ProbeResult("a/q1", "he ran", {"exact_match": 0.0, "f1": 0.5, "contains": 0.0}),
    )
    return StudentReport("job", ok=ok, results=results)


def test_score_is_the_mean_of_the_chosen_metric() -> None:
    assert KnowledgeDomain().score(PASSAGE, report()) == 0.75  # f1 by default
    assert KnowledgeDomain(metric="exact_match").score(PASSAGE, report()) == 0.5
    assert KnowledgeDomain().score(PASSAGE, report(ok=False)) == 0.0
