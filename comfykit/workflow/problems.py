"""The validation problem record that every validator (core or plugin) returns."""

from __future__ import annotations

import enum

import attrs

__all__ = ["Problem", "Severity"]


class Severity(str, enum.Enum):
    ERROR = "error"
    WARNING = "warning"

    def __str__(self) -> str:
        return self.value


@attrs.frozen
class Problem:
    """One thing wrong with a workflow: where (node, class, input), how bad, what, and how to fix it.

    ``code`` is a stable machine-readable kind (``unknown_class``,
    ``missing_input``, ``value_not_in_list``...), matching ComfyUI's error
    types where one exists.
    """

    code: str
    message: str
    node_id: str | None = None
    class_type: str | None = None
    input_name: str | None = None
    severity: Severity = Severity.ERROR
    hint: str | None = None

    @property
    def is_error(self) -> bool:
        return self.severity == Severity.ERROR

    def __str__(self) -> str:
        where = []
        if self.node_id is not None:
            where.append(f"node {self.node_id}" + (f" ({self.class_type})" if self.class_type else ""))
        if self.input_name:
            where.append(f"input {self.input_name!r}")
        prefix = ", ".join(where)
        text = f"{self.severity}: {prefix + ': ' if prefix else ''}{self.message}"
        if self.hint:
            text += f" (hint: {self.hint})"
        return text
