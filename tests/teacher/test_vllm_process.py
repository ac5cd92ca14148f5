"""teacher/vllm_process.py without a server: what a dead server's log says in one line."""

from __future__ import annotations

from teacher.vllm_process import _last_error

# The tail of a real vLLM 0.32 CPU log (the tiny test model's 16-wide heads), shortened.
DIED_OF_A_WORKER = """\
(Worker pid=453) ERROR 12-06 07:23:51 [multiproc_executor.py:1063]     raise RuntimeError(
(Worker pid=453) ERROR 12-06 07:23:51 [multiproc_executor.py:1063] RuntimeError: Unsupported CPU attention \
configuration: head_dim=16 isa=2 kv_cache_idx=0
(EngineCore pid=441) ERROR 12-06 07:23:51 [core.py:1512] EngineCore encountered a fatal error.
(EngineCore pid=441) ERROR 12-06 07:23:51 [core.py:1512] RuntimeError: Worker failed with error 'Unsupported CPU \
attention configuration: head_dim=16 isa=2 kv_cache_idx=0', please check the stack trace above for the root cause
(APIServer pid=429) ERROR 12-06 07:23:51 [async_llm.py:906] vllm.v1.engine.exceptions.EngineDeadError: \
EngineCore encountered an issue. See stack trace (above) for the root cause.
(APIServer pid=429) INFO 12-06 07:23:52 [launcher.py:110] Shutting down FastAPI HTTP server.
"""


def test_a_dead_engine_is_explained_by_the_error_it_died_of() -> None:
    assert _last_error(DIED_OF_A_WORKER) == (
        "RuntimeError: Unsupported CPU attention configuration: head_dim=16 isa=2 kv_cache_idx=0")


def test_a_validation_error_is_explained_by_its_message_and_no_error_by_nothing() -> None:
    log = "pydantic_core._pydantic_core.ValidationError: 1 validation error for ModelConfig\n" \
          "  Value error, max_model_len must be positive [type=value_error]\n"
    assert _last_error(log) == "Value error, max_model_len must be positive [type=value_error]"
    assert _last_error("INFO started\nINFO ready\n") == ""
