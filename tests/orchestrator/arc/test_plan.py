import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from orchestrator.domains.arc.grids import ArcTask, Pair, demos_text
from orchestrator.domains.arc.plan import (
    EPOCH_RANGE,
    FLAGS,
    LR_RANGE,
    SHOTS,
    STRATEGIES,
    TEACHER_SYSTEM,
    Plan,
    parse_plan,
    plan_text,
    teacher_messages,
)
from orchestrator.domains.base import ParseFailure


def plan_json(**training) -> dict:
    return {
        "data_generation": {
            "use_basic_augmentations": True,
            "use_size_augmentations": False,
            "use_chain_augmentations": False,
            "use_repeat_augmentations": True,
        },
        "training": {"strategy": "train_using_output_tokens", "learning_rate": 1e-4, "num_train_epochs": 3}
        | training,
    }


VALID = json.dumps(plan_json())
EXPECTED = Plan(families=("basic", "repeat"), loss_on="completion", lr=1e-4, epochs=3)


@pytest.mark.parametrize(
    "text",
    [
        VALID,
        f"Here is my plan:\n```json\n{json.dumps(plan_json(), indent=2)}\n```\nGood luck!",
        f'Thinking {{about it}}... {VALID} and {{"training": 1}}',
        f"{VALID}{VALID}",
        json.dumps({"plan": plan_json()}),  # the first object with a plan section, at any depth
        f"{json.dumps(plan_json(), indent=2)}\n\nPuzzle 5:\nExample 1\nInput:\n12",  # SmolLM2 running on
    ],
)
def test_a_plan_is_found_in_surrounding_text(text):
    assert parse_plan(text) == EXPECTED


def test_each_worked_example_shows_a_complete_plan():
    assert len(SHOTS) >= 2
    for _, plan in SHOTS:
        assert parse_plan(plan_text(plan)) == plan
        assert set(json.loads(plan_text(plan))["data_generation"]) == set(FLAGS)  # every flag, on or off


@given(
    st.sets(st.sampled_from(list(FLAGS.values()))),
    st.sampled_from(list(STRATEGIES.values())),
    st.floats(*LR_RANGE),
    st.integers(*EPOCH_RANGE),
)
def test_plan_text_round_trips(families, loss_on, lr, epochs):
    plan = Plan(tuple(f for f in FLAGS.values() if f in families), loss_on, lr, epochs)
    assert parse_plan(plan_text(plan)) == plan


def test_the_teacher_sees_worked_examples_then_the_demonstrations_only():
    task = ArcTask("t", (Pair(((1, 2),), ((3,),)),), (Pair(((9,),), ((6,),)),))  # no 6 or 9 in the shots
    messages = teacher_messages(task)
    assert [m["role"] for m in messages] == ["system", "user"]  # what an M-step example can reproduce
    system, user = messages
    assert system["content"] == TEACHER_SYSTEM and all(flag in TEACHER_SYSTEM for flag in FLAGS)
    for k, (shot, plan) in enumerate(SHOTS, 1):
        assert f"Puzzle {k}:\n{demos_text(shot.train)}\nPlan for puzzle {k}:\n{plan_text(plan)}" in user["content"]
    last = len(SHOTS) + 1
    assert user["content"].endswith(
        f"Puzzle {last}:\nExample 1\nInput:\n12\nOutput:\n3\n\nWrite the plan for puzzle {last} as JSON."
    )
    assert "9" not in user["content"] and "6" not in user["content"]  # no test pair


@pytest.mark.parametrize(
    ("training", "lr", "epochs"),
    [
        ({"learning_rate": 5.0, "num_train_epochs": 0}, 1e-2, 1),
        ({"learning_rate": 1e-9, "num_train_epochs": 50}, 1e-6, 10),
        ({"learning_rate": "3e-4", "num_train_epochs": "2"}, 3e-4, 2),
        ({"learning_rate": 1, "num_train_epochs": 4.0}, 1e-2, 4),
        ({"num_train_epochs": -3}, 1e-4, 1),
    ],
)
def test_numbers_are_clamped_into_the_documented_ranges(training, lr, epochs):
    plan = parse_plan(json.dumps(plan_json(**training)))
    assert (plan.lr, plan.epochs) == (lr, epochs)


def test_strategy_chooses_the_loss():
    assert parse_plan(json.dumps(plan_json(strategy="train_using_all_tokens"))).loss_on == "all"


def test_string_booleans_are_accepted():
    plan = plan_json()
    plan["data_generation"] = {k: str(v).lower() for k, v in plan["data_generation"].items()}
    assert parse_plan(json.dumps(plan)).families == ("basic", "repeat")


def without(section: str, key: str | None = None) -> str:
    plan = plan_json()
    if key is None:
        del plan[section]
    else:
        del plan[section][key]
    return json.dumps(plan)


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("", "no JSON object"),
        ("I would rotate the grids and train for 3 epochs.", "no JSON object"),
        ('{"data_generation": {"use_basic_augmentations": true,}}', "no valid JSON plan"),
        ("{'training': {}}", "no valid JSON plan"),
        ('{"plan": {"lr": 1}}', "no object with 'data_generation' and 'training'"),
        (without("data_generation"), "missing 'data_generation' object"),
        (without("training"), "missing 'training' object"),
        (without("training", "strategy"), "missing training.strategy"),
        (without("training", "learning_rate"), "missing training.learning_rate"),
        (without("data_generation", "use_size_augmentations"), "missing data_generation.use_size_aug"),
        (json.dumps(plan_json() | {"training": []}), "'training' must be an object, got list"),
        (json.dumps(plan_json(strategy="train_fast")), "training.strategy must be one of"),
        (json.dumps(plan_json(learning_rate=-1e-4)), "learning_rate must be positive"),
        (json.dumps(plan_json(learning_rate=0)), "learning_rate must be positive"),
        (json.dumps(plan_json(learning_rate="fast")), "learning_rate must be a number, got 'fast'"),
        (json.dumps(plan_json(learning_rate=True)), "learning_rate must be a number, got True"),
        (json.dumps(plan_json(learning_rate=None)), "learning_rate must be a number, got None"),
        (json.dumps(plan_json(num_train_epochs=2.5)), "num_train_epochs must be an integer, got 2.5"),
        (json.dumps(plan_json(num_train_epochs="NaN")), "num_train_epochs must be a number"),
        (VALID.replace("true", '"yes"', 1), "use_basic_augmentations must be true or false, got 'yes'"),
        (VALID.replace("true", "1", 1), "use_basic_augmentations must be true or false, got 1"),
        # SmolLM2 wrote these; each once crashed the parser instead of failing (TypeError, OverflowError,
        # ValueError, RecursionError).
        (json.dumps(plan_json(strategy={"use_output_tokens": True})), "strategy must be one of"),
        (json.dumps(plan_json(strategy=["train_using_all_tokens"])), "strategy must be one of"),
        (json.dumps(plan_json(learning_rate=10**400)), "learning_rate must be a number, got 1000"),
        ('{"training": 1' + "0" * 5000 + "}", "no valid JSON plan: ValueError at char 0: Exceeds the limit"),
        ('{"training": ' + "[" * 50_000 + "]" * 50_000 + "}", "no valid JSON plan: RecursionError"),
    ],
)
def test_malformed_plans_fail_with_their_reason(text, reason):
    with pytest.raises(ParseFailure, match="^.") as failure:
        parse_plan(text)
    assert reason in str(failure.value)
    assert "\n" not in str(failure.value) and len(str(failure.value)) < 200  # one line for the journal


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=30)
    | st.sampled_from([*STRATEGIES, "true", "false", "3e-4", "2"]),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
    max_leaves=12,
)


@given(
    st.dictionaries(st.sampled_from([*FLAGS, "other"]), JSON_VALUES, max_size=5) | JSON_VALUES,
    st.dictionaries(st.sampled_from(["strategy", "learning_rate", "num_train_epochs", "x"]), JSON_VALUES)
    | JSON_VALUES,
)
def test_any_plan_shaped_json_parses_or_fails_with_a_reason(data, training):
    text = json.dumps({"data_generation": data, "training": training})
    try:
        plan = parse_plan(text)
    except ParseFailure as failure:
        assert str(failure)
    else:
        assert LR_RANGE[0] <= plan.lr <= LR_RANGE[1] and EPOCH_RANGE[0] <= plan.epochs <= EPOCH_RANGE[1]


@given(st.text())
def test_any_text_parses_or_fails_with_a_reason(text):
    try:
        parse_plan(text)
    except ParseFailure as failure:
        assert str(failure)
