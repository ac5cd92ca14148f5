"""An LLM judge, the way the paper graded with GPT-4.1: is the student's answer right, given the gold
answer? Any OpenAI-compatible endpoint (OpenAI itself, a local vLLM) can judge.

Unlike the reference (one sequential call per question, re-graded on every request, verdicts lost),
questions are graded concurrently and each verdict is cached on disk by (model, question, gold,
answer), so a table re-run or a second row with the same answers costs nothing. The verdict is the
first word of the reply; the reference's "contains yes and not no" marked "Yes, not ..." wrong.
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

GRADER = (
    "You are a grading assistant. Decide whether the student's answer to the question is correct, judging "
    "only against the gold answer and using no outside knowledge. An answer with extra information is "
    "correct if it fully conveys the gold answer and does not contradict it. Ignore style and phrasing.\n\n"
    "Question: {question}\nGold answer: {gold}\nStudent answer: {answer}\n\n"
    "Is the student's answer correct? Respond with yes or no."
)


class JudgeError(Exception):
    """The judge endpoint cannot be used; the message names it and what went wrong."""


@dataclass(frozen=True)
class Question:
    question: str
    gold: str
    answer: str


def parse_target(target: str) -> tuple[str, str]:
    """`https://api.openai.com/v1/gpt-4.1` → (`https://api.openai.com/v1`, `gpt-4.1`); the model may
    contain slashes (`http://127.0.0.1:8000/v1/Qwen/Qwen2.5-7B-Instruct`)."""
    url, sep, model = target.partition("/v1/")
    if not sep or not model or not url.startswith(("http://", "https://")):
        raise JudgeError(f"--judge {target}: expected URL/MODEL with the endpoint's /v1, e.g. "
                         "https://api.openai.com/v1/gpt-4.1")
    return url + "/v1", model


class Judge:
    def __init__(self, url: str, model: str, api_key: str, cache: Path, concurrency: int = 16) -> None:
        from openai import OpenAI

        self.client = OpenAI(base_url=url, api_key=api_key, timeout=120.0, max_retries=3)
        self.url, self.model, self.cache, self.concurrency = url, model, cache, concurrency
        self._lock = threading.Lock()
        self._verdicts = _read_cache(cache)

    def grade(self, questions: Sequence[Question]) -> list[float]:
        """1.0 for a correct answer, 0.0 otherwise; an empty answer is wrong without asking."""
        unique = {self._key(q): q for q in questions if q.answer.strip()}
        todo = [q for key, q in unique.items() if key not in self._verdicts]
        with ThreadPoolExecutor(self.concurrency) as pool:
            list(pool.map(self._ask, todo))
        return [self._verdicts.get(self._key(q), 0.0) if q.answer.strip() else 0.0 for q in questions]

    def _ask(self, q: Question) -> None:
        from openai import OpenAIError

        prompt = GRADER.format(question=q.question, gold=q.gold, answer=q.answer)
        try:
            reply = self.client.chat.completions.create(
                model=self.model, messages=[{"role": "user", "content": prompt}], temperature=0.0,
                max_tokens=4,
            )
        except OpenAIError as e:
            first_line = f"{type(e).__name__}: {e}".splitlines()[0]
            raise JudgeError(f"judge {self.url} ({self.model}): {first_line}") from None
        words = (reply.choices[0].message.content or "").strip().lower().split()
        verdict = 1.0 if words and words[0].strip(".,!:") == "yes" else 0.0
        with self._lock:
            self._verdicts[self._key(q)] = verdict
            self.cache.parent.mkdir(parents=True, exist_ok=True)
            with self.cache.open("a") as f:
                f.write(json.dumps({"key": self._key(q), "verdict": verdict}) + "\n")

    def _key(self, q: Question) -> str:
        return hashlib.sha256(json.dumps([self.model, q.question, q.gold, q.answer]).encode()).hexdigest()


def _read_cache(path: Path) -> dict[str, float]:
    if not path.exists():
        return {}
    verdicts = {}
    for line in path.read_text().splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue  # a torn last line from an interrupted run: that verdict is asked again
        verdicts[record["key"]] = record["verdict"]
    return verdicts
