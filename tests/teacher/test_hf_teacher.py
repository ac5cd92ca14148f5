"""The in-process teacher on the tiny random model: order, n, token counts, stop strings, seeds, and
adapters that come and go without a trace."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import torch

from teacher.base import Sampling, TeacherError
from teacher.hf import HFTeacher

PROMPTS = [
    "The river flows",
    [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Why is the sky blue?"}],
    "Owls hunt at",  # a random model's greedy answer hangs on the last tokens: end each prompt differently
]
GREEDY = Sampling(n=1, temperature=0.0, max_tokens=12)


@pytest.fixture(scope="module")
def teacher(tiny_model_dir: str) -> HFTeacher:
    # fp32 so that batching (left padding) cannot flip a near-tie between greedy tokens
    return HFTeacher(tiny_model_dir, device="cpu", dtype=torch.float32)


@pytest.fixture(scope="module")
def adapters(
    tiny_model_dir: str, make_adapter: Callable[..., str], tmp_path_factory: pytest.TempPathFactory
) -> list[str]:
    root = tmp_path_factory.mktemp("hf-adapters")
    return [make_adapter(tiny_model_dir, root / f"a{seed}", r=4, seed=seed) for seed in (1, 2)]


def test_results_come_in_prompt_order_with_n_each(teacher: HFTeacher) -> None:
    batched = teacher.propose(PROMPTS, GREEDY)
    alone = [teacher.propose([p], GREEDY)[0] for p in PROMPTS]
    assert batched == alone
    assert len({row[0].text for row in batched}) == len(PROMPTS)  # the prompts really differ

    sampled = teacher.propose(PROMPTS, Sampling(n=3, temperature=1.0, max_tokens=12, seed=0))
    assert [len(row) for row in sampled] == [3, 3, 3]
    assert all(len({p.text for p in row}) > 1 for row in sampled)  # n samples, not one copied


def test_token_counts_and_finish_reasons(teacher: HFTeacher) -> None:
    for row in teacher.propose(PROMPTS, GREEDY):
        (p,) = row
        assert p.finish_reason == "length" and p.tokens == GREEDY.max_tokens
        assert len(teacher.tokenizer(p.text, add_special_tokens=False)["input_ids"]) <= p.tokens


def test_stop_string_ends_the_text_before_it(teacher: HFTeacher) -> None:
    (full,), = teacher.propose(PROMPTS[:1], GREEDY)
    stop = full.text[len(full.text) // 2 :][:3]  # a piece from the middle of the greedy answer
    (cut,), = teacher.propose(PROMPTS[:1], Sampling(n=1, temperature=0.0, max_tokens=12, stop=(stop,)))
    assert cut.finish_reason == "stop"
    assert cut.text == full.text[: full.text.find(stop)]
    assert 0 < cut.tokens < full.tokens


def test_seed_makes_sampling_reproducible(teacher: HFTeacher) -> None:
    sampling = Sampling(n=2, temperature=1.0, max_tokens=10, seed=7)
    first = teacher.propose(PROMPTS, sampling)
    assert teacher.propose(PROMPTS, sampling) == first
    assert teacher.propose(PROMPTS, Sampling(n=2, temperature=1.0, max_tokens=10, seed=8)) != first


def test_adapter_changes_outputs_and_base_comes_back_exactly(teacher: HFTeacher, adapters: list[str]) -> None:
    base_weights = {k: v.clone() for k, v in teacher.model.state_dict().items()}
    base = teacher.propose(PROMPTS, GREEDY)

    teacher.use_adapter(adapters[0])
    first = teacher.propose(PROMPTS, GREEDY)
    teacher.use_adapter(adapters[1])  # straight from one adapter to another
    second = teacher.propose(PROMPTS, GREEDY)
    teacher.use_adapter(None)

    assert first != base and second != base and first != second
    assert teacher.propose(PROMPTS, GREEDY) == base
    restored = teacher.model.state_dict()
    assert restored.keys() == base_weights.keys()
    assert all(torch.equal(restored[k], v) for k, v in base_weights.items())
    teacher.use_adapter(adapters[1])
    assert teacher.propose(PROMPTS, GREEDY) == second  # no trace of the first adapter
    teacher.use_adapter(None)


def test_bad_adapter_folder_is_one_line_error(teacher: HFTeacher, tmp_path: Path) -> None:
    with pytest.raises(TeacherError, match="no adapter_config.json") as e:
        teacher.use_adapter(str(tmp_path))
    assert "\n" not in str(e.value)


def test_sampling_from_a_prompt_s_shared_prefill_continues_it_as_greedy_decoding_does(teacher: HFTeacher) -> None:
    """n samples share one prefill of their prompt (HFTeacher._prefill, left-padded rows of unequal length):
    near temperature 0 every sample is the greedy answer that decoding the whole prompt gives."""
    greedy = teacher.propose(PROMPTS, Sampling(n=1, temperature=0.0, max_tokens=12))
    cold = teacher.propose(PROMPTS, Sampling(n=3, temperature=1e-6, top_p=1.0, max_tokens=12, seed=0))
    assert [[p.text for p in row] for row in cold] == [[row[0].text] * 3 for row in greedy]


def test_the_nucleus_sampler_draws_transformers_top_p_distribution() -> None:
    """teacher/sampling.py against transformers' TopPLogitsWarper on the same logits: the same tokens can
    be drawn (a row whose nucleus is inside the first candidates, and a flat one that is not), at the
    frequencies of the renormalised nucleus."""
    from transformers import TopPLogitsWarper

    from teacher.sampling import NucleusSampler

    torch.manual_seed(0)
    logits = torch.stack([torch.randn(50) * 4, torch.linspace(0, 1, 50)])  # peaked; flat, untied
    warped = TopPLogitsWarper(0.9)(None, logits.clone())
    expected = warped.softmax(dim=-1)
    sampler = NucleusSampler(1.0, 0.9, candidates=8)
    draws = torch.stack([sampler(None, logits.clone()).argmax(dim=-1) for _ in range(4000)])
    for row in (0, 1):
        seen = torch.bincount(draws[:, row], minlength=50) / 4000
        assert set(seen.nonzero().flatten().tolist()) <= set(expected[row].nonzero().flatten().tolist())
        assert torch.allclose(seen, expected[row], atol=0.03)
