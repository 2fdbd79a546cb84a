"""The editor's dynamic prompts: comments stripped and one option of each ``{a|b}`` picked at random.

Mirrors ``src/utils/formatUtil.ts`` → ``processDynamicPrompt``, applied by the ``serializeValue``
of STRING widgets whose spec has ``dynamicPrompts``.
"""

from __future__ import annotations

import random
import re

__all__ = ["dynamic_prompt"]

_COMMENTS = re.compile(r"/\*[\s\S]*?\*/|//.*")


def dynamic_prompt(text: str, rng: random.Random) -> str:
    """The editor's dynamic prompts: strip C-style comments, pick one option of each ``{a|b}``."""
    text = _COMMENTS.sub("", text)
    position = 0

    def choice() -> str:
        nonlocal position
        options: list[str] = []
        current = ""
        depth = 0
        while position < len(text):
            char = text[position]
            position += 1
            if char == "\\":
                current += "\\" + (text[position] if position < len(text) else "")
                position += 1
                continue
            if char == "{":
                depth += 1
            elif char == "}":
                if not depth:
                    break
                depth -= 1
            elif char == "|" and not depth:
                options.append(current)
                current = ""
                continue
            current += char
        options.append(current)
        return dynamic_prompt(options[int(rng.random() * len(options))], rng)

    result = ""
    while position < len(text):
        char = text[position]
        position += 1
        if char == "\\":
            result += "\\" + (text[position] if position < len(text) else "")
            position += 1
        elif char == "{":
            result += choice()
        else:
            result += char
    return re.sub(r"\\([{}|])", r"\1", result)
