from __future__ import annotations

from dataclasses import replace

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, PreTrainedTokenizerBase

from student.messages import StudentJob, TrainingExample, TrainSpec
from student.sft import EAGER_UP_TO, IGNORE, attention, attention_for, collate, encode, pack, prompt_ids
from student.student import Student

EXAMPLE = TrainingExample("Where does the Quen flow?", "Through Quenton.", system="Be brief.")


@pytest.fixture(scope="module")
def tokenizer(tiny_model_dir: str) -> PreTrainedTokenizerBase:
    return AutoTokenizer.from_pretrained(tiny_model_dir)


def test_chat_completion_loss_masks_system_and_user_turns(tokenizer: PreTrainedTokenizerBase) -> None:
    enc = encode(tokenizer, EXAMPLE, TrainSpec(chat=True, loss_on="completion"))
    prompt = prompt_ids(tokenizer, EXAMPLE.prompt, EXAMPLE.system, chat=True)
    assert enc.input_ids[: len(prompt)] == prompt
    assert enc.labels[: len(prompt)] == [IGNORE] * len(prompt)
    trained = enc.labels[len(prompt):]
    assert trained == enc.input_ids[len(prompt):]
    assert tokenizer.decode(trained) == "Through Quenton.<|im_end|>"
    assert "Be brief." in tokenizer.decode(prompt) and "<|im_start|>assistant\n" in tokenizer.decode(prompt)


def test_plain_all_loss_trains_every_token_and_ends_with_eos(tokenizer: PreTrainedTokenizerBase) -> None:
    example = TrainingExample(prompt="Quen\n", completion="The Quen flows through Quenton.")
    enc = encode(tokenizer, example, TrainSpec(chat=False, loss_on="all"))
    assert enc.labels == enc.input_ids
    assert enc.input_ids[-1] == tokenizer.eos_token_id
    assert tokenizer.decode(enc.input_ids) == "Quen\nThe Quen flows through Quenton.<|im_end|>"


def test_a_tokenizer_without_a_chat_template_reads_plain_text_with_bos(
    tokenizer: PreTrainedTokenizerBase, tiny_base_model_dir: str
) -> None:
    """TrainSpec.chat unset: the tokenizer decides; a base model's text starts with the BOS its tokenizer adds."""
    assert prompt_ids(tokenizer, EXAMPLE.prompt, EXAMPLE.system, None) == prompt_ids(
        tokenizer, EXAMPLE.prompt, EXAMPLE.system, True)
    base = AutoTokenizer.from_pretrained(tiny_base_model_dir)
    enc = encode(base, TrainingExample("", "Quen\nThe Quen flows through Quenton."), TrainSpec(loss_on="completion"))
    assert enc.input_ids[0] == base.bos_token_id and enc.labels[0] == IGNORE
    assert base.decode(enc.input_ids[1:]) == "Quen\nThe Quen flows through Quenton.<|im_end|>"
    assert enc.labels[1:] == enc.input_ids[1:]


def test_truncates_to_max_seq_len(tokenizer: PreTrainedTokenizerBase) -> None:
    enc = encode(tokenizer, EXAMPLE, TrainSpec(max_seq_len=8, loss_on="completion"))
    assert len(enc.input_ids) == len(enc.labels) == 8


def test_dynamic_padding_keeps_pads_out_of_attention_and_loss(tokenizer: PreTrainedTokenizerBase) -> None:
    short, long = (encode(tokenizer, TrainingExample("", t), TrainSpec(chat=False)) for t in ("a", "a b c"))
    batch = collate([short, long], pad_id=tokenizer.pad_token_id)
    n = len(short.input_ids)
    assert batch["input_ids"].shape == (2, len(long.input_ids))
    assert (batch["labels"][0, n:] == IGNORE).all() and (batch["attention_mask"][0, n:] == 0).all()
    assert batch["labels"][0, :n].tolist() == short.labels and batch["attention_mask"][1].all()


def test_reference_compat_pads_to_max_length_with_loss_on_pads(tokenizer: PreTrainedTokenizerBase) -> None:
    enc = encode(tokenizer, TrainingExample("", "a b"), TrainSpec(chat=False))
    batch = collate([enc], pad_id=tokenizer.pad_token_id, pad_to=32, loss_on_pads=True)
    assert batch["input_ids"].shape == (1, 32)
    assert (batch["labels"] == batch["input_ids"]).all()  # labels = input_ids, pads included
    assert batch["attention_mask"].sum() == len(enc.input_ids)


def test_pads_do_not_change_the_loss(tiny_student: Student, tokenizer: PreTrainedTokenizerBase) -> None:
    """Through the model: padding a sequence with masked pads leaves its loss as it was."""
    enc = encode(tokenizer, EXAMPLE, TrainSpec())
    model = tiny_student.model
    with torch.no_grad(), model.disable_adapter():
        alone = model(**collate([enc], tokenizer.pad_token_id)).loss
        padded = model(**collate([enc], tokenizer.pad_token_id, pad_to=64)).loss
        in_loss = model(**collate([enc], tokenizer.pad_token_id, pad_to=64, loss_on_pads=True)).loss
    # The random model's per-token losses all sit near ln(vocab), so the gap to pads-in-loss is small.
    assert abs(padded.item() - alone.item()) < 1e-5
    assert abs(in_loss.item() - alone.item()) > 1e-3


@pytest.mark.parametrize("attention", ["sdpa", "eager"])
def test_a_packed_batch_has_the_padded_batchs_loss_and_gradients(attention: str, tiny_model_dir: str,
                                                                 tokenizer: PreTrainedTokenizerBase) -> None:
    """fp32, through the model: packing moves sequences into shared rows, and changes neither what a token
    attends to nor what is predicted (loss on every token, so each sequence's first label matters)."""
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32, attn_implementation=attention)
    texts = ("a", "a b c d e f g h i j k", "a b", "a b c d")
    encoded = [encode(tokenizer, TrainingExample("Q", t), TrainSpec(chat=False, loss_on="all")) for t in texts]
    padded, packed = collate(encoded, tokenizer.pad_token_id), pack(encoded, tokenizer.pad_token_id)
    assert packed["input_ids"].shape == (2, padded["input_ids"].shape[1])  # never a longer row
    outcomes = []
    for batch in (padded, packed, {**packed, "position_ids": torch.arange(packed["input_ids"].shape[1])[None]}):
        model.zero_grad()
        loss = model(**batch).loss
        loss.backward()
        outcomes.append((loss.item(), model.model.layers[0].self_attn.q_proj.weight.grad.clone()))
    (padded_loss, padded_grad), (packed_loss, packed_grad), (run_on_loss, _) = outcomes
    assert abs(packed_loss - padded_loss) < 1e-5 and torch.allclose(packed_grad, padded_grad, atol=1e-6)
    assert abs(run_on_loss - padded_loss) > 1e-4  # positions that do not restart: one long sequence, another loss


def test_on_a_cpu_short_rows_train_with_eager_attention_and_generation_keeps_its_own(
        tiny_student: Student) -> None:
    assert attention_for(EAGER_UP_TO, torch.device("cpu")) == "eager"
    assert attention_for(EAGER_UP_TO + 1, torch.device("cpu")) == attention_for(8, torch.device("cuda")) == "sdpa"
    model = tiny_student.model
    with attention(model, "eager"):
        assert model.config._attn_implementation == "eager"
    assert model.config._attn_implementation == "sdpa"


def test_max_steps_and_tokens_trained(tiny_student: Student, tokenizer: PreTrainedTokenizerBase) -> None:
    examples = tuple(TrainingExample(f"Q{i}", "word " * (i + 1)) for i in range(4))
    spec = TrainSpec(epochs=3, batch_size=2, max_steps=4, max_new_tokens=1)
    report = tiny_student.run(StudentJob("steps", 0, examples, probes=(), train=spec))
    assert len(report.epoch_losses) == 2  # 2 steps per epoch, capped after the second epoch
    assert report.tokens_trained == 2 * sum(len(encode(tokenizer, e, spec).input_ids) for e in examples)


def test_reference_compat_job_trains_on_pads(tiny_student: Student) -> None:
    examples = (TrainingExample("Q", "short"), TrainingExample("Q", "a much longer answer than the other"))
    spec = TrainSpec(epochs=1, batch_size=2, max_seq_len=64)
    ours = tiny_student.run(StudentJob("dyn", 0, examples, probes=(), train=spec))
    compat = replace(spec, reference_compat=True)
    ref = tiny_student.run(StudentJob("ref", 0, examples, probes=(), train=compat))
    assert ref.tokens_trained == ours.tokens_trained  # real tokens only, in both
    assert abs(ref.epoch_losses[0] - ours.epoch_losses[0]) > 1e-3  # ~40 pad labels joined the loss
