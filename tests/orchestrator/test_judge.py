"""The LLM judge against a real HTTP server speaking the OpenAI chat API (a stand-in for the remote
model, not for the judge): verdicts, concurrency, the disk cache, and one-line errors."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from orchestrator.judge import Judge, JudgeError, Question, parse_target


class Grader(BaseHTTPRequestHandler):
    """Says yes when the student answer contains the gold answer; counts requests."""

    requests: list[str] = []

    def do_POST(self) -> None:  # noqa: N802 (http.server's name)
        body = json.loads(self.rfile.read(int(self.headers["content-length"])))
        prompt = body["messages"][0]["content"]
        Grader.requests.append(prompt)
        gold = prompt.split("Gold answer: ")[1].split("\n")[0]
        answer = prompt.split("Student answer: ")[1].split("\n")[0]
        if self.headers.get("authorization") != "Bearer secret":
            self._send(401, {"error": {"message": "bad key"}})
            return
        verdict = "Yes." if gold.lower() in answer.lower() else "No"
        self._send(200, {"id": "x", "object": "chat.completion", "created": 0, "model": body["model"],
                         "choices": [{"index": 0, "finish_reason": "stop",
                                      "message": {"role": "assistant", "content": verdict}}]})

    def _send(self, code: int, payload: dict) -> None:
        data = json.dumps(payload).encode()
        self.send_response(code)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def server() -> Iterator[str]:
    Grader.requests = []
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Grader)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_port}/v1"
    httpd.shutdown()
    httpd.server_close()


QUESTIONS = [
    Question("Topic: Genghis Khan\nWhich town fell?", "Otrar", "The town of Otrar."),
    Question("Topic: Normans\nWhere is Normandy?", "France", "In Spain."),
    Question("Topic: Normans\nWho?", "Normans", ""),
]


def test_verdicts_are_cached_on_disk(server: str, tmp_path: Path) -> None:
    cache = tmp_path / "judge.jsonl"
    assert Judge(server, "grader", "secret", cache).grade(QUESTIONS) == [1.0, 0.0, 0.0]
    assert len(Grader.requests) == 2  # an empty answer is wrong without asking
    assert Judge(server, "grader", "secret", cache).grade(QUESTIONS[:2] * 3) == [1.0, 0.0] * 3
    assert len(Grader.requests) == 2  # all from the cache
    Judge(server, "other-grader", "secret", cache).grade(QUESTIONS[:1])
    assert len(Grader.requests) == 3  # the cache is per judging model


def test_a_rejected_key_is_a_one_line_error(server: str, tmp_path: Path) -> None:
    expected = r"^judge http://127.0.0.1:\d+/v1 \(grader\): AuthenticationError"
    with pytest.raises(JudgeError, match=expected) as e:
        Judge(server, "grader", "wrong", tmp_path / "c.jsonl").grade(QUESTIONS[:1])
    assert "\n" not in str(e.value)


def test_targets_split_at_the_api_version() -> None:
    assert parse_target("https://api.openai.com/v1/gpt-4.1") == ("https://api.openai.com/v1", "gpt-4.1")
    assert parse_target("http://127.0.0.1:8000/v1/Qwen/Qwen2.5-7B-Instruct") == (
        "http://127.0.0.1:8000/v1", "Qwen/Qwen2.5-7B-Instruct")
    with pytest.raises(JudgeError, match="expected URL/MODEL"):
        parse_target("gpt-4.1")
