"""Knowledge incorporation (the paper's SQuAD setting): the context is a passage, the self-edit a list
of its implications, and τ how well the student answers the passage's questions without seeing it.

Rendering: how the student reads, chosen from its tokenizer (student.train.chat overrides it). A model with a
chat template speaks chat: each implication is an assistant turn answering "Tell me about {title}.", and each
question a user turn "Topic: {title}\n{question}" under a system turn asking for a short answer (the reference's
raw QA prompt scored 0 on SmolLM2-135M-Instruct, docs/architecture.md §4). A base model (no chat template, as the
paper's Qwen2.5-7B) gets the reference's shape in our words: it trains on plain text, "{title}\n{implication}", EOS-
terminated, and is asked with a raw QA prompt: the instruction, "Topic:", "Question:" and "Answer:" on their own
lines, the answer starting the next line (so the gold answer is scored as it would begin a line, the way it is
tokenized). Either way the title links what was learned to what is asked, as it does in the reference. Loss
on the answer only is the natural setting (`loss_on="completion"`): chat scaffolding and prompts are not
knowledge; a plain-text fact has no prompt, so all of it is trained.

Self-edit formats (the paper's prompt ablation, Table 6; prompts in our own words): `implications` (the
paper's default), `implications-long` (a longer list), `rewrite` (the passage restated several ways),
`self-qa` (question–answer pairs, trained as question → answer chat turns). Each line of the first three
is one training example; every edit also trains on the passage itself, as the paper does.

τ and the reward are metrics the config chooses (`metric`, `reward`): exact match, token F1, "contains
gold" (the gold answer inside the answer: the nearest cheap proxy of the paper's LLM judge, which accepts
extra words), and `gold_prob`, exp of the mean per-token log-probability of the gold answer
(teacher-forced, no generation: one forward pass), a dense score that moves when a 135M student's answers
are all still wrong. As exp(log-prob) it lies in [0, 1] like the others, so a failed job's 0 stays the
worst score and rewards of different kinds are compared the same way.
"""

from __future__ import annotations

import hashlib
import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from importlib.resources import files
from pathlib import Path
from typing import Any, ClassVar, Literal

from orchestrator.domains.base import ParsedEdit, ParseFailure
from orchestrator.errors import DataError, read_user_json
from student.messages import Probe, ProbeScoring, StudentReport, TrainingExample, TrainSpec
from teacher.base import ChatMessage

Metric = Literal["exact_match", "f1", "contains", "gold_prob"]
METRICS: tuple[Metric, ...] = ("exact_match", "f1", "contains", "gold_prob")
GENERATED: tuple[Metric, ...] = ("exact_match", "f1", "contains")  # need the student's greedy answers
EditFormat = Literal["implications", "implications-long", "rewrite", "self-qa"]
EDIT_FORMATS: tuple[EditFormat, ...] = ("implications", "implications-long", "rewrite", "self-qa")

TEACHER_SYSTEMS: dict[EditFormat, str] = {
    "implications": (
        "You study a passage and list what follows from it. Write the implications of the passage, both "
        "direct and indirect, one per line. Each line is a complete sentence that makes sense on its own, "
        "without the passage."
    ),
    "implications-long": (
        "You study a passage and list everything that follows from it. Write a long list of implications "
        "of the passage, direct and indirect, at least twenty, one per line. Each line is a complete "
        "sentence that names who or what it is about, so that it makes sense without the passage."
    ),
    "rewrite": (
        "You restate a passage. Rewrite it in several different ways, each rewrite on its own line, each "
        "keeping every name, date and number of the passage but saying it in other words and order."
    ),
    "self-qa": (
        "You turn a passage into study questions. Write questions about the passage with their answers, "
        "each as a line \"Question: ...\" followed by a line \"Answer: ...\". Cover every fact: names, "
        "dates, numbers, places, causes."
    ),
}
# What a base-model teacher's text continues after the passage (the parsers skip an echoed "Implications:").
TEACHER_HEADERS: dict[EditFormat, str] = {
    "implications": "Implications:", "implications-long": "Implications:", "rewrite": "Rewrites:",
    "self-qa": "Question 1:",
}
PROBE_SYSTEM = "Answer the question with a short, direct answer."


@dataclass(frozen=True)
class QA:
    question: str
    answer: str


@dataclass(frozen=True)
class Passage:
    title: str
    context: str
    questions: tuple[QA, ...]
    completions: tuple[str, ...] = ()  # self-edits already written for this passage, if any


# --- loading -------------------------------------------------------------------------------------------


def default_data() -> Path:
    """The shipped sample: 50 SQuAD v1.1 dev passages (CC BY-SA 4.0, see data/ATTRIBUTION.md)."""
    return Path(str(files("orchestrator") / "data" / "squad_sample.json"))


def load_passages(path: Path | str) -> list[Passage]:
    """Read a SEAL-format file: `[{title, context, questions: [{question, answer}], completions?}]`."""
    path = Path(path)
    records = read_user_json(path, "data file")
    if not isinstance(records, list):
        raise DataError(f"data file {path}: expected a JSON list of passages, found {type(records).__name__}")
    if not records:
        raise DataError(f"data file {path} has no passages")
    return [_passage(record, f"data file {path}: record {i}") for i, record in enumerate(records)]


def _passage(record: Any, where: str) -> Passage:
    if not isinstance(record, dict):
        raise DataError(f"{where} is not a JSON object")
    title, context = _text(record, "title", where), _text(record, "context", where)
    questions = _field(record, "questions", list, where)
    if not questions:
        raise DataError(f"{where}: field 'questions' is empty")
    completions = record.get("completions", [])
    if not isinstance(completions, list) or not all(isinstance(text, str) for text in completions):
        raise DataError(f"{where}: field 'completions' must be a list of strings")
    qas = tuple(_qa(item, where, f"questions[{j}]") for j, item in enumerate(questions))
    return Passage(title, context, qas, tuple(completions))


def _qa(item: Any, where: str, name: str) -> QA:
    if not isinstance(item, dict):
        raise DataError(f"{where}: field '{name}' must be an object with 'question' and 'answer'")
    return QA(_text(item, "question", where, f"{name}."), _text(item, "answer", where, f"{name}."))


def _field(record: dict[str, Any], name: str, kind: type, where: str, prefix: str = "") -> Any:
    """`prefix` locates a nested record: "questions[2]." names the field 'questions[2].answer'."""
    label, value = f"'{prefix}{name}'", record.get(name)
    if name not in record:
        raise DataError(f"{where}: field {label} is missing")
    if not isinstance(value, kind):
        raise DataError(f"{where}: field {label} must be a {kind.__name__}, found {type(value).__name__}")
    return value


def _text(record: dict[str, Any], name: str, where: str, prefix: str = "") -> str:
    value = _field(record, name, str, where, prefix)
    if not value.strip():
        raise DataError(f"{where}: field '{prefix}{name}' is empty")
    return value


def load_hub(split: str = "validation") -> list[Passage]:
    """SQuAD v1.1 from the Hugging Face Hub (needs network and the `hub` extra)."""
    try:
        from datasets import load_dataset
    except ImportError:
        raise DataError("loading SQuAD from the Hub needs `datasets`: pip install 'seal-lm[hub]'") from None
    return passages_from_squad(load_dataset("rajpurkar/squad", split=split))


def passages_from_squad(rows: Iterable[Mapping[str, Any]]) -> list[Passage]:
    """Group the Hub's one-row-per-question layout into passages, in order of first appearance, keeping
    the first gold answer and spaces in titles, as the SEAL authors' conversion does."""
    grouped: dict[tuple[str, str], list[QA]] = {}
    for row in rows:
        key = (row["title"].replace("_", " "), row["context"])
        grouped.setdefault(key, []).append(QA(row["question"], row["answers"]["text"][0]))
    return [Passage(title, context, tuple(qas)) for (title, context), qas in grouped.items()]


# --- self-edits ----------------------------------------------------------------------------------------

# "1.", "2)", "(3)", "- ", "* ", "• ", "Implication 4:" at the start of a line; "2.5 million" is no mark.
_LIST_MARK = re.compile(r"^\s*(?:\(?\d{1,3}[.):\]](?!\d)|[-*•+]|implication\s*\d+\s*[:.)-])\s*", re.I)
_INTRO = re.compile(r"^(?:sure|certainly|of course|okay|here (?:are|is))\b", re.IGNORECASE)
_HEADER_WORDS = 6  # "Implications:", "Sources:", "Here are the implications of the passage:"
_MARKER = re.compile(r"^\s*implications\s*:\s*$", re.IGNORECASE | re.MULTILINE)


def implications(text: str, limit: int) -> list[str]:
    """The usable lines of a self-edit: list marks stripped; intros, headers and lines without a letter
    dropped; what precedes the last "Implications:" marker (an echoed prompt) ignored; at most `limit`."""
    after_marker = _MARKER.split(text)[-1]
    lines = (_LIST_MARK.sub("", line).strip() for line in after_marker.splitlines())
    return [line for line in lines if _is_content(line)][:limit]


def _is_content(line: str) -> bool:
    is_header = line.endswith(":") and len(line.split()) <= _HEADER_WORDS
    return any(c.isalpha() for c in line) and not is_header and not _INTRO.match(line)


# "Question 3:", "Q:", "Answer 2.", "A:" opening a line, then the text; "1. " before a question is a list mark.
_QA_MARK = re.compile(r"^\s*(question|answer|q|a)\s*\d*\s*[:.)]\s*", re.IGNORECASE | re.MULTILINE)


def question_answers(text: str, limit: int) -> list[tuple[str, str]]:
    """(question, answer) pairs of a self-qa edit, at most `limit`. An answer follows its question after
    an "Answer:" mark, or else on the question's next lines. Text before the first mark is a question:
    the paper's prompt ends in "Question 1:", so its published edits start inside the first question."""
    marks = list(_QA_MARK.finditer(text))
    bounds = [m.start() for m in marks[1:]] + [len(text)] if marks else []
    parts = [("q", text[: marks[0].start()] if marks else text)]
    parts += [(m.group(1)[0].lower(), text[m.end(): end]) for m, end in zip(marks, bounds, strict=True)]
    pairs: list[tuple[str, str]] = []
    for (kind, body), (next_kind, next_body) in zip(parts, [*parts[1:], ("q", "")], strict=True):
        if kind != "q":
            continue
        lines = [_LIST_MARK.sub("", line).strip() for line in body.strip().splitlines()]
        lines = [line for line in lines if line]
        if next_kind == "a":
            question, answer = " ".join(lines), " ".join(next_body.split())
        else:
            question, answer = (lines[0], " ".join(lines[1:])) if lines else ("", "")
        if question and answer:
            pairs.append((question, answer))
    return pairs[:limit]


# --- the domain ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class KnowledgeDomain:
    metric: Metric = "f1"
    """Held-out τ."""
    reward: Metric = "gold_prob"
    """What ranks self-edits in training rounds. gold_prob by measurement: it ranked the same edits most alike
    under two LoRA seeds (benchmarks/inner_regime.py --reliability; docs/results.md), and needs no generation."""
    edit_format: EditFormat = "implications"
    max_implications: int = 30  # the reference's cap on segments per self-edit
    chat: bool = True
    """How the student reads (chat turns, or a base model's plain text): set by the run from student.train.chat
    or the student's tokenizer (orchestrator/session.py), not a data option."""
    teacher_chat: bool = True
    """How the teacher is asked (a chat, or a base model's document to continue): set by the run from the
    teacher's tokenizer."""
    name: str = "knowledge"
    default_baseline: ClassVar[str] = "context"  # an edit is worth keeping if it teaches more than the passage

    def __post_init__(self) -> None:
        for option, value, allowed in (("metric", self.metric, METRICS), ("reward", self.reward, METRICS),
                                       ("edit_format", self.edit_format, EDIT_FORMATS)):
            if value not in allowed:
                raise ValueError(f"knowledge {option} '{value}' is not one of: {', '.join(allowed)}")
        if self.max_implications < 1:
            raise ValueError(f"knowledge max_implications must be >= 1, got {self.max_implications}")

    def context_id(self, context: Passage) -> str:
        return hashlib.sha1(f"{context.title}\n{context.context}".encode()).hexdigest()[:12]

    def teacher_prompt(self, context: Passage) -> list[ChatMessage] | str:
        """A chat (system: the instruction; user: the passage), or for a base model the reference's shape: the
        instruction, the passage, and the header its answer continues."""
        if not self.teacher_chat:
            return (f"{TEACHER_SYSTEMS[self.edit_format]}\n\nPassage:\n{context.title}\n{context.context}\n\n"
                    f"{TEACHER_HEADERS[self.edit_format]}")
        return [
            {"role": "system", "content": TEACHER_SYSTEMS[self.edit_format]},
            {"role": "user", "content": f"{context.title}\n{context.context}"},
        ]

    def parse_edit(self, context: Passage, text: str, train: TrainSpec) -> ParsedEdit:
        """The edit's training examples (one per line, or per question–answer pair), then the passage
        itself, as the paper trains. A line that restates the passage is trained once, as the passage: an
        edit that only restates it trains exactly what `context_alone` does."""
        if not text.strip():
            raise ParseFailure("empty self-edit")
        if self.edit_format == "self-qa":
            pairs = question_answers(text, self.max_implications)
            if not pairs:
                raise ParseFailure("no question followed by an answer in the self-edit")
            examples = tuple(self.qa_example(context, q, a) for q, a in pairs)
        else:
            lines = implications(text, self.max_implications)
            if not lines:
                raise ParseFailure("no usable line in the self-edit (only list marks, headers or boilerplate)")
            examples = tuple(self.fact_example(context, line) for line in lines)
        passage = self.fact_example(context, context.context)
        return ParsedEdit(examples=(*(e for e in examples if e != passage), passage), train=train)

    def context_alone(self, context: Passage, train: TrainSpec) -> ParsedEdit:
        return ParsedEdit(examples=(self.fact_example(context, context.context),), train=train)

    def probes(self, context: Passage) -> tuple[Probe, ...]:
        cid = self.context_id(context)
        asked = [self._asked(context, qa.question) for qa in context.questions]
        return tuple(Probe(f"{cid}/q{i}", prompt, qa.answer, system)
                     for i, (qa, (prompt, system)) in enumerate(zip(context.questions, asked, strict=True)))

    def fact_example(self, passage: Passage, fact: str) -> TrainingExample:
        """One statement about the passage's topic: the answer to "Tell me about {title}.", or plain text."""
        if self.chat:
            return TrainingExample(prompt=f"Tell me about {passage.title}.", completion=fact)
        return TrainingExample(prompt="", completion=f"{passage.title}\n{fact}")

    def qa_example(self, passage: Passage, question: str, answer: str) -> TrainingExample:
        """A self-qa pair, asked as a question is at evaluation."""
        prompt, system = self._asked(passage, question)
        return TrainingExample(prompt=prompt, completion=answer, system=system)

    def _asked(self, passage: Passage, question: str) -> tuple[str, str | None]:
        """(prompt, system) of a question as the student is asked it (probes) and trained on it (self-qa)."""
        if self.chat:
            return f"Topic: {passage.title}\n{question}", PROBE_SYSTEM
        return f"{PROBE_SYSTEM}\nTopic: {passage.title}\nQuestion: {question}\nAnswer:\n", None

    def scoring(self, purpose: Literal["reward", "tau"]) -> ProbeScoring:
        """How students answer: a likelihood reward needs no generation in training rounds (cheap);
        held-out τ records both, so every metric can be read from a run."""
        if purpose == "tau":
            return "both"
        return "likelihood" if self.reward not in GENERATED else "both"

    def score(self, context: Passage, report: StudentReport) -> float:
        return tau(report, self.metric)

    def reward_of(self, context: Passage, report: StudentReport) -> float:
        return tau(report, self.reward)


def tau(report: StudentReport, metric: Metric) -> float:
    """Mean of `metric` over the passage's questions; a failed job scores 0 (docs/architecture.md §2)."""
    if not report.ok or not report.results:
        return 0.0
    if metric == "gold_prob":
        return sum(math.exp(r.scores["gold_logprob"]) for r in report.results) / len(report.results)
    return report.mean(metric)
