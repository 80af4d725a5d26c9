"""The project's one error type.

Everything that a user's input can get wrong — a file, a password, a
checkpoint, a protected image from a stranger — ends in a `ProfaceError`
(or a subclass) whose message names the problem in one line. The CLI prints
that line and exits 2; anything else escaping is a bug in proface-jax.
Subclasses also derive from ValueError, which callers caught before this
type existed.
"""
from __future__ import annotations


class ProfaceError(ValueError):
    """Bad input to proface-jax: the message says what and where, in one line."""


def one_line(text: object, limit: int = 300) -> str:
    """`text` on one line, cut to `limit` characters: hostile values must not flood stderr."""
    s = " ".join(str(text).split())
    return s if len(s) <= limit else s[: limit - 1] + "…"
