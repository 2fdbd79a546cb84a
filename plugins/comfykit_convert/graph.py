"""Flattening an editor workflow into the API prompt: subgraphs, links, modes and node order.

Mirrors the frontend's ``src/utils/executionUtil.ts`` → ``graphToPrompt`` and the litegraph
code it calls (``ExecutableNodeDTO.resolveInput`` / ``resolveOutput``, ``SubgraphNode``):

* a subgraph instance's inner nodes get ids ``"<instance>:<inner>"`` (chained when nested);
  1.49 first renumbers inner ids that collide (``subgraphDeduplication.ts``);
* links pass through ``Reroute`` nodes, bypassed (mode 4) nodes (to the input of a matching
  type) and subgraph boundaries; muted (mode 2) and bypassed nodes are left out, and so are
  the inputs linked to anything that was left out;
* ``PrimitiveNode`` values are written into the widgets they feed;
* a subgraph instance's saved values reach the inner widgets its inputs are promoted to.

What each node's widgets send is :mod:`comfykit_convert.widgets`; what changes between
frontends is :mod:`comfykit_convert.rules`.  The input is never modified.
"""

from __future__ import annotations

import copy
import random
import re
from collections.abc import Iterable, Mapping
from typing import Any

import attrs

from comfykit.errors import ConversionError
from comfykit_convert.prompts import dynamic_prompt
from comfykit_convert.rules import FrontendRules
from comfykit_convert.saved import Graph, collect_definitions, read_graph, renumber, short
from comfykit_convert.widgets import NodeWidgets, Widget

__all__ = ["FRONTEND_ONLY_TYPES", "flatten"]

#: Node types that exist only in the editor: never sent, links pass through them.
FRONTEND_ONLY_TYPES = frozenset({"Note", "MarkdownNote", "Reroute", "PrimitiveNode"})

_MUTED, _BYPASSED = 2, 4
# The id of the subgraph-input pseudo-node inside a subgraph definition.
_SUBGRAPH_INPUT_ID = -10
_UUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")


@attrs.define(eq=False)
class _Exec:
    """One node placed in the flattened graph: its execution id, data and context."""

    id: str
    node: Mapping[str, Any]
    graph: Graph
    instance: _Exec | None  # the subgraph instance containing this node
    subgraph: Graph | None = None  # set when this node is itself a subgraph instance


@attrs.frozen
class _Resolved:
    origin: str | None = None
    slot: int = 0
    value: Any = None
    is_value: bool = False


def flatten(
    ui: Mapping[str, Any],
    object_info: Mapping[str, Any],
    rules: FrontendRules,
    *,
    source: str | None = None,
    virtual_types: Iterable[str] = (),
    rng: random.Random | None = None,
) -> dict[str, Any]:
    """The API prompt the editor of ``rules.version`` makes from ``ui`` (see :func:`comfykit_convert.ui_to_api`)."""
    try:
        return _Converter(ui, object_info, source, frozenset(virtual_types) | FRONTEND_ONLY_TYPES, rng, rules).run()
    except RecursionError:
        raise ConversionError("the workflow nests too deeply to convert (links, subgraphs or {a|b} prompts)",
                              path=source) from None


class _Converter:
    def __init__(
        self, ui: Mapping[str, Any], object_info: Mapping[str, Any], source: str | None,
        virtual: frozenset[str], rng: random.Random | None, rules: FrontendRules,
    ) -> None:
        if not isinstance(ui, Mapping) or not isinstance(ui.get("nodes"), list):
            raise ConversionError("not an editor workflow: no 'nodes' list", path=source)
        if not isinstance(object_info, Mapping):
            raise ConversionError("object_info must be the server's /object_info mapping", path=source)
        self.object_info = object_info
        self.rules = rules
        self.source = source
        self.virtual = virtual
        self.rng = rng or random.Random()
        self.definitions = collect_definitions(ui, self._error)
        self.definition_graphs = {
            key: read_graph(d, d, f"subgraph {d.get('name') or key}", self._error) for key, d in self.definitions.items()
        }
        self.group_nodes = ui.get("extra", {}).get("groupNodes") if isinstance(ui.get("extra"), Mapping) else None
        self.root = read_graph(ui, None, "the workflow", self._error)
        self.execs: dict[str, _Exec] = {}
        self.order: list[_Exec] = []
        if rules.renumbers_subgraph_ids:
            renumber(ui, self.root, self.definition_graphs)
        # exec id -> {widget name: value written by a PrimitiveNode}
        self.primitive_values: dict[str, dict[str, Any]] = {}
        self.node_widgets: dict[str, NodeWidgets] = {}
        self.promoted: dict[str, dict[int, Any]] = {}

    # ------------------------------------------------------------------ reading the file

    def _error(self, message: str, node_id: str | None = None, hint: str | None = None) -> ConversionError:
        return ConversionError(message, path=self.source, node_id=node_id, hint=hint)

    # ------------------------------------------------------------------ flattening

    def run(self) -> dict[str, Any]:
        self._place(self.root, None, [])
        for node in self.order:
            if node.node.get("type") == "PrimitiveNode":
                self._apply_primitive(node)
        output: dict[str, dict[str, Any]] = {}
        for node in self.order:
            if node.subgraph is not None or self._skipped(node) or _mode(node.node) in (_MUTED, _BYPASSED):
                continue
            output[node.id] = self._serialize(node)
        # The editor drops inputs linked to nodes it left out (muted ones, for instance).
        for entry in output.values():
            inputs = entry["inputs"]
            for name in [n for n, v in inputs.items() if _is_link(v) and v[0] not in output]:
                del inputs[name]
        # JavaScript objects list integer-like keys first, in numeric order, then the rest as inserted.
        numeric = sorted((k for k in output if k.isdigit()), key=int)
        return {key: output[key] for key in [*numeric, *(k for k in output if not k.isdigit())]}

    def _place(self, graph: Graph, instance: _Exec | None, path: list[str]) -> None:
        nodes = list(graph.nodes.values())
        if instance is None:
            # The editor walks the root graph in execution order (saved as each node's
            # 'order'), and a subgraph's nodes in the order of its definition.
            nodes = [nodes[i] for i in sorted(range(len(nodes)), key=lambda i: (_order(nodes[i]), i))]
        for node in nodes:
            exec_id = ":".join([*path, str(node["id"])])
            kind = node["type"]
            placed = _Exec(exec_id, node, graph, instance)
            if kind in self.definitions:
                if len(path) > 32 or any(kind == (p.node.get("type")) for p in _ancestors(instance)):
                    raise self._error(f"subgraph {kind} contains itself", exec_id)
                placed.subgraph = self.definition_graphs[kind]
                self.execs[exec_id] = placed
                self._place(placed.subgraph, placed, [*path, str(node["id"])])
            else:
                self.execs[exec_id] = placed
            self.order.append(placed)

    def _skipped(self, node: _Exec) -> bool:
        """Inside a muted or bypassed subgraph instance nothing runs; frontend-only nodes never do.

        1.49 (``SubgraphNode.getInnerNodes``) only looks at the root-level instance's mode.
        """
        ancestors = _ancestors(node.instance)
        if self.rules.nested_instance_modes_ignored:
            ancestors = ancestors[-1:]
        if any(_mode(a.node) in (_MUTED, _BYPASSED) for a in ancestors):
            return True
        return node.node["type"] in self.virtual

    # ------------------------------------------------------------------ widgets

    def _schema(self, node: _Exec) -> Mapping[str, Any]:
        kind = node.node["type"]
        schema = self.object_info.get(kind)
        if isinstance(schema, Mapping):
            return schema
        if isinstance(self.group_nodes, Mapping) and (kind.startswith("workflow>") or kind.startswith("workflow/")):
            raise self._error(
                f"{_describe(node)} is a group node, which comfykit cannot convert",
                node.id,
                hint="In the editor, right-click the group node and choose 'Convert to nodes' "
                     "(or convert it to a subgraph), then save the workflow again.",
            )
        if _UUID.fullmatch(kind):
            raise self._error(
                f"{_describe(node)} is an instance of a subgraph the file has no definition for",
                node.id,
                hint="Save the workflow again from the editor; the subgraph definitions go in 'definitions.subgraphs'.",
            )
        raise self._error(
            f"{_describe(node)}: the server does not know the class {kind!r}",
            node.id,
            hint="Install the custom node pack that provides it (e.g. with ComfyUI-Manager) and restart the server, "
                 "or pass the /object_info of a server that has it.",
        )

    def _widgets(self, node: _Exec) -> NodeWidgets:
        """The node's live widgets, configured with its saved values (built once per node)."""
        found = self.node_widgets.get(node.id)
        if found is None:
            found = NodeWidgets(node.node["type"], self._schema(node), self.rules, node.node.get("properties"))
            found.configure(node.node.get("widgets_values"))
            self.node_widgets[node.id] = found
        return found

    def _apply_primitive(self, primitive: _Exec) -> None:
        saved = primitive.node.get("widgets_values")
        if not isinstance(saved, list) or not saved:
            return
        value = saved[0]
        for target, slot in self._targets(primitive, 0, set()):
            inputs = target.node.get("inputs")
            if not isinstance(inputs, list) or not 0 <= slot < len(inputs) or not isinstance(inputs[slot], Mapping):
                continue
            widget = inputs[slot].get("widget")
            name = widget.get("name") if isinstance(widget, Mapping) else None
            if isinstance(name, str):
                self.primitive_values.setdefault(target.id, {})[name] = value

    def _targets(self, node: _Exec, slot: int, seen: set[str]) -> list[tuple[_Exec, int]]:
        """The nodes an output feeds, looking through reroutes (as a primitive's value travels)."""
        if node.id in seen:
            return []
        seen.add(node.id)
        found: list[tuple[_Exec, int]] = []
        prefix = node.id.rsplit(":", 1)[0] + ":" if ":" in node.id else ""
        for link in node.graph.links.values():
            if str(link.origin_id) != str(node.node["id"]) or link.origin_slot != slot:
                continue
            target = self.execs.get(prefix + str(link.target_id))
            if target is None:
                continue
            if target.node["type"] == "Reroute":
                found += self._targets(target, 0, seen)
            else:
                found.append((target, link.target_slot))
        return found

    # ------------------------------------------------------------------ links

    def _serialize(self, node: _Exec) -> dict[str, Any]:
        widgets = self._widgets(node)
        inputs = widgets.sent_values(self.primitive_values.get(node.id, {}), lambda text: dynamic_prompt(text, self.rng))
        saved_inputs = node.node.get("inputs") or []
        if not isinstance(saved_inputs, list):
            raise self._error(f"{_describe(node)}: its 'inputs' is not a list", node.id)
        for index, entry in enumerate(saved_inputs):
            if not isinstance(entry, Mapping) or not isinstance(entry.get("name"), str):
                raise self._error(f"{_describe(node)} has a malformed input: {short(entry)}", node.id)
            if _dropped_child(entry["name"], widgets):
                continue  # dynamicWidgets.ts → updateWidgets disconnects inputs the chosen option lacks
            resolved = self._resolve_input(node, index, set(), None)
            if resolved is None:
                continue
            if resolved.is_value:
                value = copy.deepcopy(resolved.value)
                inputs[entry["name"]] = {"__value__": value} if isinstance(value, list) else value
            else:
                inputs[entry["name"]] = [resolved.origin, resolved.slot]
        title = node.node.get("title")
        if not isinstance(title, str):
            schema = self._schema(node)
            kind = node.node["type"]
            title = self.rules.titles.get(kind) or schema.get("display_name") or schema.get("name") or kind
        return {"inputs": inputs, "class_type": node.node["type"], "_meta": {"title": title}}

    def _resolve_input(self, node: _Exec, slot: int, visited: set[str], type_: Any) -> _Resolved | None:
        key = f"{node.id}[I]{slot}"
        if key in visited:
            raise self._error(f"node {node.id}: its links go round in a circle", node.id)
        visited.add(key)
        inputs = node.node.get("inputs") or []
        if not isinstance(inputs, list) or not 0 <= slot < len(inputs) or not isinstance(inputs[slot], Mapping):
            return None
        entry = inputs[slot]
        link = node.graph.links.get(str(entry.get("link"))) if entry.get("link") is not None else None
        if link is None:
            return None  # unconnected, or a dangling link id (the editor drops those on load)
        if str(link.origin_id) == str(_SUBGRAPH_INPUT_ID) and node.instance is not None:
            return self._resolve_subgraph_input(node.instance, link.origin_slot, visited)
        origin = self._sibling(node, link.origin_id)
        if origin is None:
            if str(link.origin_id) == str(_SUBGRAPH_INPUT_ID):
                return None  # a subgraph input link outside a subgraph leads nowhere
            raise self._error(
                f"{_describe(node)}: input {entry.get('name')!r} is linked to node {link.origin_id}, which does not exist",
                node.id,
                hint="The file is damaged or was edited by hand; open it in the editor, reconnect the input and save it again.",
            )
        return self._resolve_output(origin, link.origin_slot, type_ if type_ is not None else entry.get("type"), visited)

    def _sibling(self, node: _Exec, node_id: Any) -> _Exec | None:
        prefix = node.id.rsplit(":", 1)[0] + ":" if ":" in node.id else ""
        return self.execs.get(prefix + str(node_id))

    def _resolve_subgraph_input(self, instance: _Exec, slot: int, visited: set[str]) -> _Resolved | None:
        assert instance.subgraph is not None and instance.subgraph.definition is not None
        declared = _list(instance.subgraph.definition.get("inputs"))
        if not 0 <= slot < len(declared) or not isinstance(declared[slot], Mapping):
            return None
        name = declared[slot].get("name")
        outer_inputs = _list(instance.node.get("inputs"))
        outer_index = next((i for i, e in enumerate(outer_inputs) if isinstance(e, Mapping) and e.get("name") == name), None)
        if outer_index is not None and outer_inputs[outer_index].get("link") is not None:
            return self._resolve_input(instance, outer_index, visited, None)
        promoted = self._promoted(instance)
        if promoted.get(slot) is None:
            return None
        return _Resolved(value=promoted[slot], is_value=True)

    def _promoted(self, instance: _Exec) -> dict[int, Any]:
        """The values of a subgraph instance's promoted widgets, by boundary input slot.

        ``SubgraphNode._applyPromotedWidgetValues``: one saved value per boundary input that
        reaches an inner widget, in input order, with no companion slots; an instance that saved
        fewer values leaves the inner widget's own value.
        """
        known = self.promoted.get(instance.id)
        if known is not None:
            return known
        assert instance.subgraph is not None and instance.subgraph.definition is not None
        declared = _list(instance.subgraph.definition.get("inputs"))
        saved = instance.node.get("widgets_values")
        result: dict[int, Any] = {}
        position = 0
        for slot, boundary in enumerate(declared):
            widget = self._inner_widget(instance, boundary, 0)
            if widget is None:
                continue
            if isinstance(saved, list) and position < len(saved):
                result[slot] = saved[position]
            elif isinstance(saved, Mapping) and isinstance(boundary, Mapping) and boundary.get("name") in saved:
                result[slot] = saved[boundary["name"]]
            else:
                result[slot] = widget.value
            position += 1
        self.promoted[instance.id] = result
        return result

    def _inner_widget(self, instance: _Exec, boundary: Any, depth: int) -> Widget | None:
        """The inner widget a subgraph input is promoted to: the first of its links that reaches one."""
        assert instance.subgraph is not None
        link_ids = boundary.get("linkIds") if isinstance(boundary, Mapping) else None
        for link_id in _list(link_ids):
            link = instance.subgraph.links.get(str(link_id))
            if link is None:
                continue
            inner = self.execs.get(f"{instance.id}:{link.target_id}")
            if inner is None or inner.node["type"] in self.virtual:
                continue
            if inner.subgraph is not None:
                # a nested instance: its own boundary input of that slot, down to a concrete widget
                boundary_of = self._boundary_input(inner, link.target_slot)
                if boundary_of is not None and depth < 32:
                    widget = self._inner_widget(inner, boundary_of, depth + 1)
                    if widget is not None:
                        return widget
                continue
            inputs = _list(inner.node.get("inputs"))
            if not 0 <= link.target_slot < len(inputs) or not isinstance(inputs[link.target_slot], Mapping):
                continue
            widget_ref = inputs[link.target_slot].get("widget")
            name = widget_ref.get("name") if isinstance(widget_ref, Mapping) else None
            if not isinstance(name, str) or inner.node["type"] not in self.object_info:
                continue
            widget = self._widgets(inner).find(name)
            if widget is not None:
                return widget
        return None

    def _boundary_input(self, instance: _Exec, slot: int) -> Mapping[str, Any] | None:
        """The definition's input behind an instance's input ``slot`` (matched by name: saved lists differ)."""
        assert instance.subgraph is not None
        declared = [d for d in _list(instance.subgraph.definition.get("inputs") if instance.subgraph.definition else None)
                    if isinstance(d, Mapping)]
        saved = _list(instance.node.get("inputs"))
        name = saved[slot].get("name") if 0 <= slot < len(saved) and isinstance(saved[slot], Mapping) else None
        if name is None:
            return declared[slot] if 0 <= slot < len(declared) else None
        return next((d for d in declared if d.get("name") == name), None)

    def _resolve_output(self, node: _Exec, slot: int, type_: Any, visited: set[str]) -> _Resolved | None:
        key = f"{node.id}[O]{slot}"
        if key in visited:
            raise self._error(f"node {node.id}: its links go round in a circle", node.id)
        visited.add(key)
        if _mode(node.node) == _MUTED:
            return None  # ExecutableNodeDTO.resolveOutput: a muted node gives nothing; a widget keeps its value
        if _mode(node.node) == _BYPASSED:
            index = self._bypass_slot(node, slot, type_)
            return None if index < 0 else self._resolve_input(node, index, visited, None)
        if node.subgraph is not None:
            return self._resolve_subgraph_output(node, slot, type_, visited)
        if node.node["type"] in self.virtual:
            inputs = _list(node.node.get("inputs"))
            if slot < len(inputs):
                return self._resolve_input(node, slot, visited, type_)
            return None  # a primitive (its value was written into the widgets) or a note
        return _Resolved(origin=node.id, slot=slot)

    def _resolve_subgraph_output(self, instance: _Exec, slot: int, type_: Any, visited: set[str]) -> _Resolved | None:
        assert instance.subgraph is not None and instance.subgraph.definition is not None
        outputs = _list(instance.subgraph.definition.get("outputs"))
        if not 0 <= slot < len(outputs) or not isinstance(outputs[slot], Mapping):
            return None
        for link_id in _list(outputs[slot].get("linkIds"))[:1]:
            link = instance.subgraph.links.get(str(link_id))
            if link is None:
                return None
            if str(link.origin_id) == str(_SUBGRAPH_INPUT_ID):
                return self._resolve_subgraph_input(instance, link.origin_slot, visited)
            inner = self.execs.get(f"{instance.id}:{link.origin_id}")
            if inner is None:
                return None
            return self._resolve_output(inner, link.origin_slot, type_, visited)
        return None

    def _bypass_slot(self, node: _Exec, slot: int, type_: Any) -> int:
        """The input a bypassed node passes to output ``slot``: same index if types fit, else first match."""
        inputs = [e if isinstance(e, Mapping) else {} for e in _list(node.node.get("inputs"))]
        outputs = _list(node.node.get("outputs"))
        output_type = outputs[slot].get("type") if slot < len(outputs) and isinstance(outputs[slot], Mapping) else None
        if type_ in ("*", ""):
            return slot if len(inputs) > slot else 0
        if slot < len(inputs) and _connects(inputs[slot].get("type"), output_type) and _connects(inputs[slot].get("type"), type_):
            return slot
        for index, entry in enumerate(inputs):
            if entry.get("type") == type_:
                return index
        for index, entry in enumerate(inputs):
            if _connects(entry.get("type"), output_type) and _connects(entry.get("type"), type_):
                return index
        return -1


# ---------------------------------------------------------------------- helpers


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _mode(node: Mapping[str, Any]) -> int:
    mode = node.get("mode", 0)
    return mode if isinstance(mode, int) else 0


def _order(node: Mapping[str, Any]) -> float:
    order = node.get("order")
    return float(order) if isinstance(order, (int, float)) and not isinstance(order, bool) else float("inf")


def _ancestors(instance: _Exec | None) -> list[_Exec]:
    found = []
    while instance is not None:
        found.append(instance)
        instance = instance.instance
    return found


def _is_link(value: Any) -> bool:
    return isinstance(value, list) and len(value) == 2 and isinstance(value[0], str)


def _describe(node: _Exec) -> str:
    """``node 12 (KSampler "My sampler")``: how errors name a node."""
    title = node.node.get("title")
    return f"node {node.id} ({node.node.get('type')}" + (f" {title!r})" if isinstance(title, str) else ")")


def _dropped_child(name: str, widgets: NodeWidgets) -> bool:
    """A saved ``N.child`` input whose dynamic combo ``N`` no longer defines it."""
    if name in widgets.defined or "." not in name:
        return False
    parts = name.split(".")
    for length in range(len(parts) - 1, 0, -1):
        prefix = ".".join(parts[:length])
        if prefix in widgets.defined:
            parent = widgets.find(prefix)
            return parent is not None and parent.dynamic is not None
    return False


def _connects(a: Any, b: Any) -> bool:
    """LiteGraph's type check: wildcards match anything; comma lists match if any member does."""
    a = 0 if a in ("", "*") else a
    b = 0 if b in ("", "*") else b
    if not a or not b or a == b:
        return True
    first, second = str(a).lower(), str(b).lower()
    if "," not in first and "," not in second:
        return first == second
    return any(_connects(x, y) for x in first.split(",") for y in second.split(","))

