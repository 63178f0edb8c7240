"""The ``recagent`` command line (typer). Output and error formatting live here only.

One module per group of commands; importing them registers their commands on :data:`app`,
in the order ``recagent --help`` lists them.
"""

from importlib import import_module

from recagent.cli._common import app

for _module in ("data", "train", "train_ranker", "train_explainer", "train_reader", "evaluate", "ask", "chat", "serve", "llm", "prompts"):
    import_module(f"{__name__}.{_module}")

__all__ = ["app"]
