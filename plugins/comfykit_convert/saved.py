"""The saved workflow's structure: its graphs (root and subgraph definitions), nodes and links.

Reads what the editor saves (links as lists in the root of old files, as objects in subgraph
definitions) into :class:`Graph` records, with an error naming the part that is malformed, and
renumbers colliding subgraph node ids the way the 1.49 editor does when it loads a file.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import attrs

from comfykit.errors import ConversionError

__all__ = ["ErrorFactory", "Graph", "Link", "collect_definitions", "is_int", "read_graph", "renumber", "short"]

#: builds the ConversionError for a message (the converter adds the file name)
ErrorFactory = Callable[[str], ConversionError]


@attrs.frozen
class Link:
    """One saved link: ``origin_id``'s output ``origin_slot`` into ``target_id``'s input ``target_slot``."""

    id: Any
    origin_id: Any
    origin_slot: int
    target_id: Any
    target_slot: int
    type: Any


@attrs.define
class Graph:
    """The root graph or one subgraph definition."""

    nodes: dict[str, Mapping[str, Any]]
    links: dict[str, Link]
    definition: Mapping[str, Any] | None = None  # the subgraph definition, for boundary slots


def collect_definitions(ui: Mapping[str, Any], error: ErrorFactory) -> dict[str, Mapping[str, Any]]:
    found: dict[str, Mapping[str, Any]] = {}
    pending = [ui]
    while pending:
        holder = pending.pop()
        definitions = holder.get("definitions")
        subgraphs = definitions.get("subgraphs") if isinstance(definitions, Mapping) else None
        if subgraphs is None:
            continue
        if not isinstance(subgraphs, list):
            raise error("'definitions.subgraphs' is not a list")
        for definition in subgraphs:
            if not isinstance(definition, Mapping) or not isinstance(definition.get("id"), str):
                raise error("a subgraph definition has no string 'id'")
            if definition["id"] not in found:
                found[definition["id"]] = definition
                pending.append(definition)
    return found

def read_graph(holder: Mapping[str, Any], definition: Mapping[str, Any] | None, what: str, error: ErrorFactory) -> Graph:
    raw_nodes = holder.get("nodes")
    if not isinstance(raw_nodes, list):
        raise error(f"{what} has no 'nodes' list")
    nodes: dict[str, Mapping[str, Any]] = {}
    for node in raw_nodes:
        if not isinstance(node, Mapping) or "id" not in node or not isinstance(node.get("type"), str):
            raise error(f"{what} has a node without an 'id' or a 'type': {short(node)}")
        if not isinstance(node["id"], (int, str)) or isinstance(node["id"], bool):
            raise error(f"{what} has a node whose id is not a number: {short(node)}")
        nodes[str(node["id"])] = node
    raw_links = holder.get("links") or []
    if not isinstance(raw_links, list):
        raise error(f"{what}'s 'links' is not a list")
    links: dict[str, Link] = {}
    for raw in raw_links:
        link = _link(raw, what, error)
        if link is not None:
            links[str(link.id)] = link
    return Graph(nodes, links, definition)

def _link(raw: Any, what: str, error: ErrorFactory) -> Link | None:
    try:
        if isinstance(raw, list) and len(raw) >= 5:
            return Link(raw[0], raw[1], int(raw[2]), raw[3], int(raw[4]), raw[5] if len(raw) > 5 else "*")
        if isinstance(raw, Mapping):
            return Link(raw["id"], raw["origin_id"], int(raw["origin_slot"]), raw["target_id"],
                         int(raw["target_slot"]), raw.get("type", "*"))
    except (KeyError, TypeError, ValueError):
        pass
    if raw is None:
        return None  # the editor leaves holes for deleted links in old files
    raise error(f"{what} has a malformed link: {short(raw)}")

def renumber(ui: Mapping[str, Any], root: Graph, definitions: dict[str, Graph]) -> None:
    """Give inner nodes whose ids collide with an earlier one a fresh id, as 1.49 does on load.

    ``subgraphDeduplication.ts`` → ``deduplicateSubgraphNodeIds``: ids in use start as the root's;
    definitions are walked in file order; ``definitions`` is updated in place.
    """
    used = {int(k) for k in root.nodes if is_int(k)}
    state = ui.get("state")
    if isinstance(state, Mapping) and is_int(state.get("lastNodeId")):
        last = max(0, int(state["lastNodeId"]))
    else:
        last = int(ui["last_node_id"]) if is_int(ui.get("last_node_id")) else 0
    for key, graph in definitions.items():
        renamed: dict[str, str] = {}
        for node_id in list(graph.nodes):
            if not is_int(node_id):
                continue
            number = int(node_id)
            if number in used:
                last += 1
                while last in used:
                    last += 1
                renamed[node_id] = str(last)
                number = last
            else:
                last = max(last, number)
            used.add(number)
        if renamed:
            definitions[key] = Graph(
                {renamed.get(k, k): ({**n, "id": int(renamed[k])} if k in renamed else n) for k, n in graph.nodes.items()},
                {k: attrs.evolve(link, origin_id=renamed.get(str(link.origin_id), link.origin_id),
                                 target_id=renamed.get(str(link.target_id), link.target_id))
                 for k, link in graph.links.items()},
                graph.definition,
            )


def is_int(value: Any) -> bool:
    if isinstance(value, bool):
        return False
    if isinstance(value, int):
        return True
    return isinstance(value, str) and value.lstrip("-").isdigit()


def short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."
