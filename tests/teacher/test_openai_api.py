"""Failures that need no model: a server that is not there, a taken port, a sync mode that cannot work.
Each is one line that says what to change, and none waits for a timeout."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from teacher.base import TeacherError
from teacher.openai_api import OpenAIEndpoint
from teacher.vllm_process import HOST, ServerOptions, VLLMServer, check_port_free, free_port
from teacher.vllm_server import VLLMTeacher


def test_unreachable_url_is_one_line() -> None:
    url = f"http://{HOST}:{free_port()}/v1"  # nothing listens on a port just found free
    with pytest.raises(TeacherError, match="cannot reach the teacher at .*fix --url") as e:
        VLLMTeacher.attach(url, "key")
    assert "\n" not in str(e.value)


def test_url_with_or_without_v1_is_the_same_server() -> None:
    assert OpenAIEndpoint("http://h:1/v1/", "k").root == OpenAIEndpoint("http://h:1", "k").root == "http://h:1"


@pytest.mark.usefixtures("needs_vllm")
def test_port_in_use_fails_before_launching(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind((HOST, 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(TeacherError, match=f"port {port} on {HOST} is in use: pass another --port") as e:
            check_port_free(port)
        server = VLLMServer("unused-model", tmp_path, ServerOptions(port=port))
        with pytest.raises(TeacherError, match="is in use"):
            server.start()
        assert server.pid is None  # nothing was started
    assert "\n" not in str(e.value)


def test_merge_restart_needs_a_managed_server() -> None:
    endpoint = OpenAIEndpoint("http://127.0.0.1:1", "k")
    with pytest.raises(TeacherError, match="merge-restart needs a managed server"):
        VLLMTeacher(endpoint, "m", None, "merge-restart", None)
    with pytest.raises(TeacherError, match="unknown adapter_sync 'hotload'"):
        VLLMTeacher(endpoint, "m", None, "hotload", None)  # type: ignore[arg-type]
