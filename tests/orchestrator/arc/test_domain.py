import json
from pathlib import Path

import pytest

from orchestrator.domains import DomainOptionError, make_domain
from orchestrator.domains.arc.augment import GEOMETRIC
from orchestrator.domains.arc.data import load
from orchestrator.domains.arc.domain import PAPER_VIEWS, ArcDomain
from orchestrator.domains.arc.grids import ArcTask, Pair, grid_to_text
from orchestrator.domains.arc.ttt import INSTRUCTION
from orchestrator.domains.base import ParseFailure
from student.messages import ProbeResult, StudentReport, TrainSpec

# A rule with no symmetry (rotate clockwise) and asymmetric grids, so a view that is not mapped
# back gives a different grid.
ROT = GEOMETRIC["rot90"]
DEMOS = tuple(Pair(g, ROT(g)) for g in (((1, 2), (3, 4)), ((5, 0), (0, 0)), ((0, 6, 0), (7, 0, 0))))
TESTS = (Pair(((8, 9, 1),), ROT(((8, 9, 1),))), Pair(((2,), (3,)), ROT(((2,), (3,)))))
TASK = ArcTask("rot", DEMOS, TESTS)
WRONG = ((5, 5), (5, 5))
PLAN = {
    "data_generation": {
        "use_basic_augmentations": True,
        "use_size_augmentations": True,
        "use_chain_augmentations": False,
        "use_repeat_augmentations": False,
    },
    "training": {"strategy": "train_using_all_tokens", "learning_rate": 3e-4, "num_train_epochs": 4},
}


def report(answers: dict[str, str], ok: bool = True) -> StudentReport:
    return StudentReport("job", ok, tuple(ProbeResult(pid, text, {}) for pid, text in answers.items()))


def golds(domain: ArcDomain, task: ArcTask) -> dict[str, str]:
    return {p.probe_id: p.gold for p in domain.probes(task)}


def test_probes_ask_each_test_input_under_each_view_consistently():
    probes = ArcDomain().probes(TASK)
    assert len(probes) == len(PAPER_VIEWS) * len(TESTS) == len({p.probe_id for p in probes})
    (flipped,) = [p for p in probes if p.probe_id == "rot/test1/flip_cols"]
    flip = GEOMETRIC["flip_cols"]
    assert flipped.prompt == grid_to_text(flip(TESTS[1].input))
    assert flipped.gold == grid_to_text(flip(TESTS[1].output))
    assert flipped.system.startswith(INSTRUCTION)
    assert grid_to_text(flip(DEMOS[2].input)) in flipped.system


def test_correct_answers_in_every_view_solve_the_task():
    domain = ArcDomain()
    assert domain.score(TASK, report(golds(domain, TASK))) == 1.0


def test_wrong_or_missing_answers_score_zero():
    domain = ArcDomain()
    assert domain.score(TASK, report({pid: grid_to_text(WRONG) for pid in golds(domain, TASK)})) == 0.0
    assert domain.score(TASK, report({})) == 0.0
    assert domain.score(TASK, report(golds(domain, TASK), ok=False)) == 0.0


def test_answers_are_mapped_back_before_voting():
    """Answers in each view's orientation (the golds) solve the task; answers that ignore the view are
    wrong once mapped back, except the identity view's, which two wrong votes then push out of pass@2."""
    domain = ArcDomain(views=("rot90", "rot180", "identity"))
    assert domain.score(TASK, report(golds(domain, TASK))) == 1.0
    unmapped = {pid: grid_to_text(TESTS[int(pid.split("/")[1][-1])].output) for pid in golds(domain, TASK)}
    assert domain.score(TASK, report(unmapped)) == 0.0


def test_the_right_grid_counts_as_a_second_attempt():
    domain = ArcDomain()
    answers = golds(domain, TASK)
    for pid in answers:
        if not pid.endswith("/identity"):
            answers[pid] = grid_to_text(WRONG)  # a symmetric grid: the same vote from every view
    assert domain.score(TASK, report(answers)) == 1.0


def test_the_right_grid_outvoted_twice_fails():
    domain = ArcDomain()
    answers = golds(domain, TASK)
    for view, wrong in zip(PAPER_VIEWS[1:], [WRONG, WRONG, ((4,),), ((4,),), ((4,),)], strict=True):
        answers[f"rot/test0/{view}"] = grid_to_text(wrong)
    assert domain.score(TASK, report(answers)) == 0.0


def test_every_test_input_must_be_solved():
    domain = ArcDomain()
    answers = golds(domain, TASK)
    answers.update({pid: grid_to_text(WRONG) for pid in answers if "/test1/" in pid})
    assert domain.score(TASK, report(answers)) == 0.0


def test_unparseable_answers_are_ignored():
    domain = ArcDomain()
    answers = golds(domain, TASK)
    answers["rot/test0/identity"] = "I think the answer is a rotation."
    answers["rot/test1/identity"] = "12\n3"
    assert domain.score(TASK, report(answers)) == 1.0


def test_a_plan_becomes_a_capped_ttt_job():
    domain = ArcDomain(max_examples=20, max_steps=50)
    edit = domain.parse_edit(TASK, f"Plan: {json.dumps(PLAN)}", TrainSpec(lr=1.0, epochs=99, max_steps=30))
    assert 1 <= len(edit.examples) <= 20 and len(set(edit.examples)) == len(edit.examples)
    assert all(e.system.startswith(INSTRUCTION) for e in edit.examples)
    train = edit.train
    assert (train.lr, train.epochs, train.loss_on, train.chat, train.max_steps) == (3e-4, 4, "all", True, 30)
    assert domain.parse_edit(TASK, json.dumps(PLAN), TrainSpec()).train.max_steps == 50


def test_a_malformed_plan_is_a_parse_failure():
    with pytest.raises(ParseFailure, match="missing 'training' object"):
        ArcDomain().parse_edit(TASK, json.dumps({"data_generation": PLAN["data_generation"]}), TrainSpec())


def test_the_registry_builds_the_domain_from_config_options():
    domain = make_domain("arc", {"views": ["identity", "rot180"], "max_steps": 8})
    assert domain == ArcDomain(views=("identity", "rot180"), max_steps=8)
    assert domain.name == "arc" and domain.default_selection == "all_positive"


@pytest.mark.parametrize("options", [{"views": ["up"]}, {"views": []}, {"max_steps": 0}, {"leave_out": [0]}])
def test_bad_options_are_rejected(options):
    with pytest.raises(DomainOptionError, match="^arc "):
        make_domain("arc", options)


def test_rendered_examples_of_the_tiny_tasks_are_short(smollm2_dir):
    """The CPU run's sequence lengths: chat-rendered TTT examples of the arc-tiny tasks, every family on,
    stay well under the reference's 8,192-token filter (measured: at most ~530 tokens)."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(smollm2_dir)
    all_on = json.loads(json.dumps(PLAN).replace("false", "true"))
    for task in load("training#6150a2bd,5582e5ca,44f52bb0") + load("evaluation#66e6c45b,68b67ca3"):
        for example in ArcDomain(max_examples=64).parse_edit(task, json.dumps(all_on), TrainSpec()).examples:
            messages = [
                {"role": "system", "content": example.system},
                {"role": "user", "content": example.prompt},
                {"role": "assistant", "content": example.completion},
            ]
            text = tokenizer.apply_chat_template(messages, tokenize=False)
            assert len(tokenizer(text, add_special_tokens=False)["input_ids"]) < 768, task.task_id


def test_the_tiny_teacher_prompts_and_a_whole_plan_fit_the_m_step(smollm2_dir):
    """An M-step example is the teacher prompt (worked examples + demonstrations) and the kept plan: in
    arc-tiny it must fit restem.train.max_seq_len, or the plan the teacher learns would be cut off."""
    from transformers import AutoTokenizer

    from orchestrator.config import load_config
    from orchestrator.domains.arc.plan import teacher_messages

    cfg = load_config(Path(__file__).parents[3] / "configs" / "arc-tiny.toml")
    tokenizer = AutoTokenizer.from_pretrained(smollm2_dir)
    for task in load(cfg.data.train_path) + load(cfg.data.eval_path):
        ids = tokenizer.apply_chat_template(teacher_messages(task), add_generation_prompt=True, return_dict=False)
        assert len(ids) + cfg.teacher.sampling.max_tokens < cfg.restem.train.max_seq_len, task.task_id


def test_a_student_runs_the_ttt_job_and_answers_every_probe(tiny_model_dir):
    """The domain's job through the real (domain-agnostic) Student, on a tiny random model."""
    from student.messages import StudentJob
    from student.student import Student

    domain = ArcDomain(views=("identity", "rot180"), max_examples=4, max_steps=2)
    (task,) = load("training#6150a2bd")
    edit = domain.parse_edit(task, json.dumps(PLAN), TrainSpec(batch_size=2, max_new_tokens=12))
    job = StudentJob("arc", 0, edit.examples, domain.probes(task), train=edit.train)
    result = Student(tiny_model_dir, device="cpu").run(job)
    assert result.ok and len(result.epoch_losses) == 1  # 4 examples, batch 2: the 2-step budget ends epoch 1
    assert {r.probe_id for r in result.results} == {p.probe_id for p in job.probes}
    assert domain.score(task, result) == 0.0  # a random model does not rotate grids
