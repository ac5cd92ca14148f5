import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from orchestrator.domains.arc.grids import ArcTask, Pair
from orchestrator.domains.arc.plan import PLAN_REQUEST, Plan, parse_plan, teacher_messages
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
    ],
)
def test_a_plan_is_found_in_surrounding_text(text):
    assert parse_plan(text) == EXPECTED


def test_the_teacher_prompt_example_is_a_valid_plan():
    example = PLAN_REQUEST.rsplit("\n", 1)[-1]
    assert parse_plan(example) == Plan(families=("basic",), loss_on="completion", lr=1e-4, epochs=2)


def test_the_teacher_sees_the_demonstrations_and_the_request_only():
    task = ArcTask("t", (Pair(((1, 2),), ((3,),)),), (Pair(((4,),), ((5,),)),))
    system, user = teacher_messages(task)
    assert system["role"] == "system" and user["role"] == "user"
    assert user["content"] == f"Example 1\nInput:\n12\nOutput:\n3\n\n{PLAN_REQUEST}"  # no test pair


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
    ],
)
def test_malformed_plans_fail_with_their_reason(text, reason):
    with pytest.raises(ParseFailure, match="^.") as failure:
        parse_plan(text)
    assert reason in str(failure.value)


@given(st.text())
def test_any_text_parses_or_fails_with_a_reason(text):
    try:
        parse_plan(text)
    except ParseFailure as failure:
        assert str(failure)
