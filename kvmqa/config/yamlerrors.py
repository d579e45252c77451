"""YAML syntax errors as one line a user reads: file, the line where the broken construct starts, what
broke."""

from __future__ import annotations

import yaml


def yaml_error_text(exc: yaml.YAMLError, src: str) -> str:
    """One line for a YAML syntax error, naming the line where the broken construct starts.

    For a flow sequence or mapping, a quoted scalar or a tag that never closes, PyYAML's problem mark is where
    it
    gave up (often the next key or the end of the file) and its context mark is where the construct opened:
    that
    line is named first. For a block collection the context is the whole enclosing list or mapping, so the
    problem mark (the mis-indented line itself) is the line to name.
    """
    problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
    context = getattr(exc, "context", None) or ""
    opened = getattr(exc, "context_mark", None)
    gave_up = getattr(exc, "problem_mark", None)
    if opened is None or "block" in context:
        if gave_up is None:
            return f"{src}: malformed YAML: {problem}"
        return f"{src}:{gave_up.line + 1}: malformed YAML: {problem}"
    text = (
        f"{src}:{opened.line + 1}: malformed YAML: {problem} ({context} opened at line {opened.line + 1}, "
        f"column {opened.column + 1})"
    )
    if gave_up is not None and gave_up.line != opened.line:
        text += f"; the parser gave up at line {gave_up.line + 1}"
    return text
