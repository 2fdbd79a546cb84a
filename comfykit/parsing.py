"""Decoding untrusted text with a bounded cost: YAML without alias bombs, JSON with a size budget.

Servers, workflow files and config files are all read from places comfykit does not control.
A byte cap alone does not bound memory: 60 MB of ``[{},{},...]`` parses into 20 million dicts
(1.5 GB), and twenty lines of YAML aliases expand into a billion nodes once anything walks
them.  The functions here refuse such inputs before building them and raise ``ValueError``
subclasses, so the callers' existing ``except ValueError`` / ``except yaml.YAMLError`` paths turn
them into the right comfykit error with the file or URL named.  Once decoded,
:func:`plain_data_problem` says whether a value is plain JSON data (YAML can build more).
"""

from __future__ import annotations

import email.utils
import json
import math
import time
from typing import Any

import yaml

__all__ = [
    "MAX_JSON_CONTAINERS",
    "MAX_NESTING",
    "MAX_YAML_ALIAS_NODES",
    "JSONBudgetExceeded",
    "YAMLBudgetExceeded",
    "load_json",
    "load_yaml",
    "parse_retry_after",
    "plain_data_problem",
]

#: Objects and arrays one JSON answer may hold.  A full ComfyUI ``/history`` (10,000 entries)
#: needs about half a million; a million empty dicts cost about 100 MB, which is the ceiling.
MAX_JSON_CONTAINERS = 1_000_000

#: Nodes that aliases may add to a YAML document once expanded.  Hand-written configs and
#: workflows use a few anchors for repeated values; a "billion laughs" document needs millions.
MAX_YAML_ALIAS_NODES = 100_000

#: deeper data than this is refused: real workflows and configs nest a few levels, and copying or
#: converting data nested thousands deep would exhaust the interpreter's recursion limit
MAX_NESTING = 64


class JSONBudgetExceeded(ValueError):
    """The JSON text would cost more memory than its budget allows, or nests too deeply."""


class YAMLBudgetExceeded(yaml.YAMLError):
    """The YAML document's aliases expand past the budget, or refer to themselves."""


def load_json(data: str | bytes, *, max_containers: int = MAX_JSON_CONTAINERS) -> Any:
    """``json.loads`` that refuses, before parsing, text with more than ``max_containers`` objects and arrays.

    The count is taken over the raw text (an upper bound: brackets inside strings count too),
    which costs a few milliseconds for 60 MB, far less than the parse it may save.
    Nesting deeper than Python's recursion limit is a :class:`JSONBudgetExceeded`, not a RecursionError.
    """
    raw = data.encode("utf-8", "surrogatepass") if isinstance(data, str) else data
    containers = raw.count(b"{") + raw.count(b"[")
    if containers > max_containers:
        raise JSONBudgetExceeded(
            f"the JSON holds up to {containers:,} objects and arrays, more than the {max_containers:,} allowed"
        )
    try:
        return json.loads(data)
    except RecursionError:
        raise JSONBudgetExceeded("the JSON is nested too deeply to read") from None


def _expanded_size(node: yaml.Node, sizes: dict[int, int], open_nodes: set[int]) -> int:
    key = id(node)
    if key in sizes:
        return sizes[key]
    if key in open_nodes:
        raise YAMLBudgetExceeded(f"an alias refers to a node that contains it (line {node.start_mark.line + 1})")
    open_nodes.add(key)
    size = 1
    if isinstance(node, yaml.MappingNode):
        for key_node, value_node in node.value:
            size += _expanded_size(key_node, sizes, open_nodes) + _expanded_size(value_node, sizes, open_nodes)
    elif isinstance(node, yaml.SequenceNode):
        for item in node.value:
            size += _expanded_size(item, sizes, open_nodes)
    open_nodes.discard(key)
    sizes[key] = size
    return size


def load_yaml(text: str, *, max_alias_nodes: int = MAX_YAML_ALIAS_NODES) -> Any:
    """``yaml.safe_load`` of one document, refusing aliases that expand past ``max_alias_nodes`` extra nodes.

    The document is composed once; its size with every alias expanded is computed on the node
    graph (each distinct node once), compared with the number of distinct nodes, and only then
    is the Python value built.  A self-referring alias is refused too: nothing downstream
    (JSON encoding, the journal, a deep copy) can handle a cyclic value.
    """
    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        sizes: dict[int, int] = {}
        try:
            expanded = _expanded_size(node, sizes, set())
        except RecursionError:
            raise YAMLBudgetExceeded("the YAML is nested too deeply to read") from None
        if expanded - len(sizes) > max_alias_nodes:
            raise YAMLBudgetExceeded(
                f"the YAML's aliases expand to {expanded:,} nodes from {len(sizes):,} written ones, "
                f"more than the {max_alias_nodes:,} extra nodes allowed"
            )
        return loader.construct_document(node)
    finally:
        loader.dispose()


def plain_data_problem(data: Any, max_depth: int = MAX_NESTING) -> str | None:
    """Why decoded ``data`` is not plain JSON (a cycle, a non-JSON type, too deep), or ``None`` when it is.

    YAML can build what JSON cannot: anchors that contain themselves, dates, bytes, sets.
    The walk is iterative and visits a shared (aliased) value once, so neither deep
    nesting nor a "billion laughs" document makes the check itself expensive.
    """
    verified: set[int] = set()
    # (value, depth, exiting): a container is pushed again with exiting=True to leave the current path.
    stack: list[tuple[Any, int, bool]] = [(data, 0, False)]
    on_path: set[int] = set()
    while stack:
        value, depth, exiting = stack.pop()
        if exiting:
            on_path.discard(id(value))
            verified.add(id(value))
            continue
        if value is None or isinstance(value, (str, bool, int, float)):
            continue
        if not isinstance(value, (dict, list)):
            return f"a value of type {type(value).__name__} ({str(value)[:40]!r}), which JSON cannot carry"
        if id(value) in on_path:
            return "a value that contains itself (a YAML anchor used inside itself)"
        if id(value) in verified:
            continue
        if depth >= max_depth:
            return f"values nested more than {max_depth} levels deep"
        on_path.add(id(value))
        stack.append((value, depth, True))
        if isinstance(value, dict):
            for key, item in value.items():
                if not isinstance(key, (str, int, float, bool)) and key is not None:
                    return f"a key of type {type(key).__name__} ({str(key)[:40]!r}), which JSON cannot carry"
                stack.append((item, depth + 1, False))
        else:
            stack.extend((item, depth + 1, False) for item in value)
    return None


def parse_retry_after(value: str | None, *, now: float | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (delay-seconds or an HTTP date), or None when unusable.

    Non-finite, negative and unparsable values are None: the caller falls back to its own
    backoff, which it also caps, so a server cannot make a client wait forever.
    """
    if value is None:
        return None
    text = value.strip()
    try:
        seconds = float(text)
    except ValueError:
        try:
            moment = email.utils.parsedate_to_datetime(text)
        except (TypeError, ValueError, IndexError):
            return None
        if moment.tzinfo is None:
            return None
        seconds = moment.timestamp() - (time.time() if now is None else now)
        seconds = max(seconds, 0.0)
    if not math.isfinite(seconds) or seconds < 0:
        return None
    return seconds
