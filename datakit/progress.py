"""The one progress bar of datakit and train (rich), drawn on stderr.

>>> with progress_bar() as bar:                      # a bar only when stderr is a terminal
...     task = bar.add_task("converting acdc", total=len(items))
...     for item in items:
...         bar.advance(task)

``enabled``: ``None`` draws the bar only when stderr is a terminal (rich's test, which ``FORCE_COLOR``
or ``TTY_COMPATIBLE`` can override), ``True`` always, ``False`` never. A disabled bar is still a
``Progress``: ``add_task``, ``advance`` and ``update`` cost microseconds and print nothing, so callers
never branch on it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from rich.progress import Progress


def progress_bar(enabled: bool | None = None, *, transient: bool = True) -> Progress:
    """A rich ``Progress`` on stderr: description, bar, done/total, time left.

    ``transient``: the bar is erased when it ends (a command's summary line follows it); ``False`` keeps
    the finished bar on the terminal (``train run``: the last loss stays visible)."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    console = Console(stderr=True)
    on = console.is_terminal if enabled is None else enabled
    return Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                    TimeRemainingColumn(), console=console, disable=not on, transient=transient)
