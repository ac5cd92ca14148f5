"""Knowledge incorporation (the paper's SQuAD setting): the context is a passage, the self-edit a list
of its implications, and τ how well the student answers the passage's questions without seeing it.

Rendering choice. The reference trains a base model on plain "title\\nline" text and asks it with a raw
QA prompt; on an instruct model that prompt scored 0 here (DESIGN §4), so this domain speaks chat: each
implication is an assistant turn answering "Tell me about {title}.", and each question is a user turn
"Topic: {title}\\n{question}" under a system turn asking for a short answer. The title links what was
learned to what is asked, as it does in the reference. Loss on the assistant turn only is the natural
setting (`loss_on="completion"`): the chat scaffolding is not knowledge.

Grading defaults to token F1 (SQuAD's standard metric): unlike "gold contained in the answer" it cannot
be gamed by long answers, and unlike exact match it gives a 135M student partial credit.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from importlib.resources import files
from pathlib import Path
from typing import Any, Literal

from orchestrator.domains.base import ParsedEdit, ParseFailure
from orchestrator.errors import DataError
from student.messages import Probe, StudentReport, TrainingExample, TrainSpec
from teacher.base import ChatMessage

Metric = Literal["exact_match", "f1", "contains"]

TEACHER_SYSTEM = (
    "You study a passage and list what follows from it. Write the implications of the passage, both "
    "direct and indirect, one per line. Each line is a complete sentence that makes sense on its own, "
    "without the passage."
)
PROBE_SYSTEM = "Answer the question with a short, direct answer."
# The paper's student settings (LoRA r=32, α=64 is LoRASpec's default), batched, loss on the answers.
TRAIN = TrainSpec(lr=1e-3, epochs=10, batch_size=4, loss_on="completion")


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
    try:
        records = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise DataError(f"data file {path} not found") from None
    except json.JSONDecodeError as e:
        raise DataError(f"data file {path} is not valid JSON ({e.msg} at line {e.lineno})") from None
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


# --- the domain ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class KnowledgeDomain:
    metric: Metric = "f1"
    max_implications: int = 30  # the reference's cap on segments per self-edit
    name: str = "knowledge"

    def context_id(self, context: Passage) -> str:
        return hashlib.sha1(f"{context.title}\n{context.context}".encode()).hexdigest()[:12]

    def teacher_prompt(self, context: Passage) -> list[ChatMessage]:
        return [
            {"role": "system", "content": TEACHER_SYSTEM},
            {"role": "user", "content": f"{context.title}\n{context.context}"},
        ]

    def parse_edit(self, context: Passage, text: str, train: TrainSpec) -> ParsedEdit:
        """One example per implication, then the passage itself, as the paper trains."""
        if not text.strip():
            raise ParseFailure("empty self-edit")
        lines = implications(text, self.max_implications)
        if not lines:
            raise ParseFailure("no usable line in the self-edit (only list marks, headers or boilerplate)")
        facts = (*lines, context.context)
        return ParsedEdit(examples=tuple(fact_example(context, fact) for fact in facts), train=train)

    def probes(self, context: Passage) -> tuple[Probe, ...]:
        cid = self.context_id(context)
        return tuple(
            Probe(f"{cid}/q{i}", f"Topic: {context.title}\n{qa.question}", qa.answer, PROBE_SYSTEM)
            for i, qa in enumerate(context.questions)
        )

    def score(self, context: Passage, report: StudentReport) -> float:
        return tau(report, self.metric)


def tau(report: StudentReport, metric: Metric) -> float:
    """Mean of `metric` over the passage's questions; a failed job scores 0 (DESIGN §2)."""
    return report.mean(metric) if report.ok else 0.0


def fact_example(passage: Passage, fact: str) -> TrainingExample:
    """One statement about the passage's topic, as the answer to "Tell me about {title}."."""
    return TrainingExample(prompt=f"Tell me about {passage.title}.", completion=fact)
