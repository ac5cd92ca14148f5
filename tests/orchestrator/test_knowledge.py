import dataclasses
import json
import math
import sys
from pathlib import Path
from typing import Any

import pytest

from orchestrator.domains.base import ParseFailure
from orchestrator.domains.knowledge import (
    EDIT_FORMATS,
    PROBE_SYSTEM,
    QA,
    TEACHER_SYSTEMS,
    KnowledgeDomain,
    Passage,
    default_data,
    implications,
    load_hub,
    load_passages,
    passages_from_squad,
    question_answers,
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


def test_gold_prob_is_the_mean_per_token_probability_and_rewards_use_their_own_metric() -> None:
    scored = tuple(dataclasses.replace(r, scores=r.scores | {"gold_logprob": lp})
                   for r, lp in zip(report().results, (math.log(0.5), math.log(0.1)), strict=True))
    full = StudentReport("job", ok=True, results=scored)
    domain = KnowledgeDomain(metric="contains", reward="gold_prob")
    assert domain.reward_of(PASSAGE, full) == pytest.approx(0.3)
    assert domain.score(PASSAGE, full) == 0.5
    assert domain.reward_of(PASSAGE, dataclasses.replace(full, ok=False)) == 0.0  # failure: the worst reward


def test_the_reward_default_is_the_reliability_benchmark_s_choice() -> None:
    """benchmarks/inner_regime.py --reliability chose it (docs/results.md, "Which reward ranks self-edits reliably");
    held-out τ stays a correctness metric."""
    assert KnowledgeDomain().reward == "gold_prob" and KnowledgeDomain().metric == "f1"


def test_a_likelihood_reward_needs_no_generation_in_training_rounds() -> None:
    assert KnowledgeDomain(reward="gold_prob").scoring("reward") == "likelihood"
    assert KnowledgeDomain(reward="contains").scoring("reward") == "both"
    assert KnowledgeDomain(reward="gold_prob").scoring("tau") == "both"  # held-out τ records every metric


@pytest.mark.parametrize(("option", "value"), [("metric", "bogus"), ("reward", "judge"), ("edit_format", "poem")])
def test_unknown_metric_or_format_is_rejected_naming_the_option(option: str, value: str) -> None:
    with pytest.raises(ValueError, match=f"knowledge {option} '{value}' is not one of"):
        KnowledgeDomain(**{option: value})


# --- self-edit formats, on the paper's published edits ---

SYNTHETIC = Path(__file__).resolve().parents[3] / "shared/data/seal/general-knowledge/data/synthetic_data"
PUBLISHED = {  # format → a file of published self-edits written with that format's prompt
    "implications": "train/iter0_train.json",
    "implications-long": "train/alternate_prompts/iter0_train_prompt-long.json",
    "rewrite": "train/alternate_prompts/iter0_train_prompt-rewrite.json",
    "self-qa": "train/alternate_prompts/iter0_train_prompt-self-qa.json",
}


@pytest.mark.parametrize("edit_format", list(PUBLISHED))
def test_every_format_parses_the_published_edits_of_its_prompt(edit_format: str) -> None:
    passages = load_passages(SYNTHETIC / PUBLISHED[edit_format])
    domain = KnowledgeDomain(edit_format=edit_format)  # type: ignore[arg-type]
    parsed, failed = [], 0
    for passage in passages:
        for text in passage.completions:
            try:
                parsed.append((passage, domain.parse_edit(passage, text, TrainSpec())))
            except ParseFailure:
                failed += 1
    assert failed / (failed + len(parsed)) < 0.05  # the few failures are edits with no usable content
    for passage, edit in parsed:
        assert edit.examples[-1].completion == passage.context  # every format also trains on the passage
        assert all(e.completion.strip() for e in edit.examples)
    if edit_format == "self-qa":
        qa = [e for _, edit in parsed for e in edit.examples[:-1]]
        assert all(e.prompt.startswith("Topic: ") and e.system == PROBE_SYSTEM for e in qa)


def test_self_qa_pairs_in_every_published_shape() -> None:
    # the paper's prompt ends in "Question 1:", so an edit starts inside the first question
    marked = "Where was the port?\n\nAnswer:  Piraeus\n\nQuestion 2:  For how long?\n\nAnswer:  1854-1857\n"
    numbered = ("1. What did the Shah decide?\nAnswer 1:  To split the army.\n\n"
                "Question 2: 2. Who hunted him?\nAnswer 2: Jebe")
    unmarked = "Who played a peripheral role?\nGreece played a peripheral role.\n\nQuestion 2: Why?\nTo expand."
    assert question_answers(marked, 30) == [("Where was the port?", "Piraeus"), ("For how long?", "1854-1857")]
    assert question_answers(numbered, 30) == [("What did the Shah decide?", "To split the army."),
                                              ("Who hunted him?", "Jebe")]
    assert question_answers(unmarked, 30) == [("Who played a peripheral role?", "Greece played a peripheral role."),
                                              ("Why?", "To expand.")]
    assert question_answers("Q: a?\nA: b\nQ: c?\nA: d", 1) == [("a?", "b")]


@pytest.mark.parametrize("text", ["Question 1: Who?\nQuestion 2: What?", "1. 1. 1. 1.", ""])
def test_self_qa_without_an_answer_is_a_parse_failure(text: str) -> None:
    with pytest.raises(ParseFailure):
        KnowledgeDomain(edit_format="self-qa").parse_edit(PASSAGE, text, TrainSpec())


def test_each_format_asks_the_teacher_its_own_way() -> None:
    prompts = {f: KnowledgeDomain(edit_format=f).teacher_prompt(PASSAGE)[0]["content"] for f in EDIT_FORMATS}
    assert len(set(prompts.values())) == len(EDIT_FORMATS)
    assert "Question:" in prompts["self-qa"] and "Rewrite" in prompts["rewrite"]


# --- rendering for a base model (no chat template) ---


def test_a_base_model_trains_on_plain_title_and_fact_text() -> None:
    parsed = KnowledgeDomain(chat=False).parse_edit(PASSAGE, "1. Otrar fell.\n2. The Shah fled.", TrainSpec())
    assert [(e.prompt, e.completion, e.system) for e in parsed.examples] == [
        ("", "Genghis Khan\nOtrar fell.", None), ("", "Genghis Khan\nThe Shah fled.", None),
        ("", f"Genghis Khan\n{PASSAGE.context}", None),
    ]


def test_a_base_model_is_asked_with_a_raw_qa_prompt_and_trains_self_qa_as_asked() -> None:
    domain = KnowledgeDomain(chat=False, edit_format="self-qa")
    probe = domain.probes(PASSAGE)[0]
    assert probe.prompt == (f"{PROBE_SYSTEM}\nTopic: Genghis Khan\nQuestion: Which town did the Mongols seize?\n"
                            "Answer:\n")
    assert probe.system is None and probe.gold == "Otrar"
    (qa, passage) = domain.parse_edit(PASSAGE, "Which town did the Mongols seize?\nAnswer: Otrar", TrainSpec()).examples
    assert (qa.prompt, qa.completion, qa.system) == (probe.prompt, "Otrar", None)
    assert passage.prompt == ""


def test_how_the_student_reads_is_set_by_the_run_not_a_data_option() -> None:
    from orchestrator.domains import DomainOptionError, make_domain

    assert make_domain("knowledge", {"metric": "contains"}, chat=False) == KnowledgeDomain(metric="contains",
                                                                                          chat=False)
    assert make_domain("knowledge", {}).chat
    with pytest.raises(DomainOptionError, match="unknown option 'chat' for domain knowledge"):
        make_domain("knowledge", {"chat": False})
    assert make_domain("arc", {}, chat=False).name == "arc"  # a domain without the field ignores it


def test_a_base_model_teacher_continues_a_document_ending_in_its_format_s_header() -> None:
    prompt = KnowledgeDomain(teacher_chat=False).teacher_prompt(PASSAGE)
    assert isinstance(prompt, str)
    assert prompt.startswith(TEACHER_SYSTEMS["implications"])
    assert prompt.endswith(f"\n\nPassage:\nGenghis Khan\n{PASSAGE.context}\n\nImplications:")
    self_qa = KnowledgeDomain(teacher_chat=False, edit_format="self-qa").teacher_prompt(PASSAGE)
    assert isinstance(self_qa, str) and self_qa.endswith("Question 1:")
    # what it writes after the header parses as a chat teacher's answer does
    assert implications(f"{prompt}\n1. Otrar fell.", 30) == implications("1. Otrar fell.", 30) == ["Otrar fell."]
