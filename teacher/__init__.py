"""The teacher writes self-edits (docs/architecture.md §2): `base` is the interface, `hf` the in-process backend,
`vllm_server` the vLLM / OpenAI-compatible one (`vllm_process` runs the server, `openai_api` talks
to it). Backends import torch or vLLM client code, so this package imports nothing eagerly."""
