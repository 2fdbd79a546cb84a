"""UI-format (editor) workflows to API-format graphs, the way the editor's "Export (API)" does it.

The ComfyUI editor saves the canvas: ``nodes`` with positional ``widgets_values``,
``links``, groups and ``definitions.subgraphs``.  The server runs the API graph
``{node_id: {"class_type", "inputs", "_meta": {"title"}}}``.  The editor's own
conversion (``graphToPrompt`` in the frontend) rebuilds every node's widgets from
the server's ``/object_info`` to learn which saved value belongs to which input,
then follows links through frontend-only nodes.  :func:`ui_to_api` does the same
from the saved file alone:

* widget values are matched to the node's widget inputs (required, then optional,
  in ``/object_info`` order); hidden companion widgets the editor adds after some
  inputs (``control_after_generate`` after seeds, the upload button after
  ``image_upload`` combos) take a saved value but are not sent;
* ``PrimitiveNode`` values are written into the widgets they feed;
* links pass through ``Reroute`` nodes, bypassed (mode 4) nodes (to the first
  input of a matching type) and subgraph boundaries;
* muted (mode 2) and bypassed nodes are left out, and so are the inputs linked to
  anything that was left out;
* a subgraph instance's inner nodes get ids ``"<instance>:<inner>"`` (chained
  when nested).

The input is never modified; the result shares nothing with it.
"""

from __future__ import annotations

import copy
import random
import re
from collections.abc import Iterable, Mapping
from typing import Any

import attrs

from comfykit.errors import ConversionError

__all__ = ["EDITOR_DISPLAY_NAMES", "FRONTEND_ONLY_TYPES", "ui_to_api"]

#: Node types that exist only in the editor: never sent, links pass through them.
FRONTEND_ONLY_TYPES = frozenset({"Note", "MarkdownNote", "Reroute", "PrimitiveNode"})

# Widget types the editor builds from /object_info input specs (a list is a COMBO too).
_WIDGET_TYPES = frozenset({"INT", "FLOAT", "STRING", "BOOLEAN", "COMBO", "MARKDOWN"})
# Widgets the editor's own extensions add for special input types.  They take a saved value;
# the editor computes what it sends for them when queueing (a webcam capture, a 3D snapshot,
# a recording), which a file cannot reproduce, so the saved value is sent as it is.
_EXTENSION_WIDGET_TYPES = frozenset({"WEBCAM", "AUDIO_RECORD", "LOAD_3D", "LOAD_3D_ANIMATION", "IMAGECOMPARE"})
# Input options that make the editor add an upload button widget (a saved value, never sent).
_UPLOAD_OPTIONS = ("image_upload", "video_upload", "audio_upload", "animated_image_upload")
_MUTED, _BYPASSED = 2, 4
# Ids of the subgraph input and output pseudo-nodes inside a subgraph definition.
_SUBGRAPH_INPUT_ID, _SUBGRAPH_OUTPUT_ID = -10, -20
_COMMENTS = re.compile(r"/\*[\s\S]*?\*/|//.*")
_UUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")
#: Titles the editor's English translations give classes whose ``/object_info`` has no
#: ``display_name`` (the editor titles a node with the translated name).  Only names
#: checked against real "Export (API)" output are listed; others fall back to the class name.
EDITOR_DISPLAY_NAMES: Mapping[str, str] = {
    "ImageScaleToTotalPixels": "Scale Image to Total Pixels",
}


@attrs.frozen
class _Widget:
    """One widget the editor would create for a node, and how many saved values follow it."""

    name: str
    spec: tuple[Any, Mapping[str, Any]]
    companions: int = 0  # control_after_generate (+ control_filter_list on combos)
    sent: bool = True


@attrs.frozen
class _Link:
    id: Any
    origin_id: Any
    origin_slot: int
    target_id: Any
    target_slot: int
    type: Any


@attrs.define
class _Graph:
    """The root graph or one subgraph definition."""

    nodes: dict[str, Mapping[str, Any]]
    links: dict[str, _Link]
    definition: Mapping[str, Any] | None = None  # the subgraph definition, for boundary slots


@attrs.define(eq=False)
class _Exec:
    """One node placed in the flattened graph: its execution id, data and context."""

    id: str
    node: Mapping[str, Any]
    graph: _Graph
    instance: _Exec | None  # the subgraph instance containing this node
    subgraph: _Graph | None = None  # set when this node is itself a subgraph instance


@attrs.frozen
class _Resolved:
    origin: str | None = None
    slot: int = 0
    value: Any = None
    is_value: bool = False


def ui_to_api(
    ui: Mapping[str, Any],
    object_info: Mapping[str, Any],
    *,
    source: str | None = None,
    virtual_types: Iterable[str] = (),
    rng: random.Random | None = None,
) -> dict[str, Any]:
    """Convert an editor workflow to a new API-format graph, as the editor's "Export (API)" would.

    :param ui: the saved workflow (``nodes``, ``links``, ...); not modified.
    :param object_info: the server's ``/object_info`` (every class the workflow uses).
    :param source: the file name, for error messages.
    :param virtual_types: more frontend-only node types (from editor extensions) to pass through.
    :param rng: picks the options of ``{a|b}`` dynamic prompts, as the editor does at random.
    :raise ConversionError: naming the node and class, for an unknown class, a group node or
        a malformed file.
    """
    try:
        return _Converter(ui, object_info, source, frozenset(virtual_types) | FRONTEND_ONLY_TYPES, rng).run()
    except RecursionError:
        raise ConversionError("the workflow nests too deeply to convert (links, subgraphs or {a|b} prompts)",
                              path=source) from None


class _Converter:
    def __init__(
        self, ui: Mapping[str, Any], object_info: Mapping[str, Any], source: str | None,
        virtual: frozenset[str], rng: random.Random | None,
    ) -> None:
        if not isinstance(ui, Mapping) or not isinstance(ui.get("nodes"), list):
            raise ConversionError("not an editor workflow: no 'nodes' list", path=source)
        if not isinstance(object_info, Mapping):
            raise ConversionError("object_info must be the server's /object_info mapping", path=source)
        self.object_info = object_info
        self.source = source
        self.virtual = virtual
        self.rng = rng or random.Random()
        self.definitions = self._collect_definitions(ui)
        self.group_nodes = ui.get("extra", {}).get("groupNodes") if isinstance(ui.get("extra"), Mapping) else None
        self.root = self._graph(ui, None, "the workflow")
        self.execs: dict[str, _Exec] = {}
        self.order: list[_Exec] = []
        # (exec id, widget name) -> value written by a PrimitiveNode
        self.primitive_values: dict[tuple[str, str], Any] = {}

    # ------------------------------------------------------------------ reading the file

    def _error(self, message: str, node_id: str | None = None, hint: str | None = None) -> ConversionError:
        return ConversionError(message, path=self.source, node_id=node_id, hint=hint)

    def _collect_definitions(self, ui: Mapping[str, Any]) -> dict[str, Mapping[str, Any]]:
        found: dict[str, Mapping[str, Any]] = {}
        pending = [ui]
        while pending:
            holder = pending.pop()
            definitions = holder.get("definitions")
            subgraphs = definitions.get("subgraphs") if isinstance(definitions, Mapping) else None
            if subgraphs is None:
                continue
            if not isinstance(subgraphs, list):
                raise self._error("'definitions.subgraphs' is not a list")
            for definition in subgraphs:
                if not isinstance(definition, Mapping) or not isinstance(definition.get("id"), str):
                    raise self._error("a subgraph definition has no string 'id'")
                if definition["id"] not in found:
                    found[definition["id"]] = definition
                    pending.append(definition)
        return found

    def _graph(self, holder: Mapping[str, Any], definition: Mapping[str, Any] | None, what: str) -> _Graph:
        raw_nodes = holder.get("nodes")
        if not isinstance(raw_nodes, list):
            raise self._error(f"{what} has no 'nodes' list")
        nodes: dict[str, Mapping[str, Any]] = {}
        for node in raw_nodes:
            if not isinstance(node, Mapping) or "id" not in node or not isinstance(node.get("type"), str):
                raise self._error(f"{what} has a node without an 'id' or a 'type': {_short(node)}")
            if not isinstance(node["id"], (int, str)) or isinstance(node["id"], bool):
                raise self._error(f"{what} has a node whose id is not a number: {_short(node)}")
            nodes[str(node["id"])] = node
        raw_links = holder.get("links") or []
        if not isinstance(raw_links, list):
            raise self._error(f"{what}'s 'links' is not a list")
        links: dict[str, _Link] = {}
        for raw in raw_links:
            link = self._link(raw, what)
            if link is not None:
                links[str(link.id)] = link
        return _Graph(nodes, links, definition)

    def _link(self, raw: Any, what: str) -> _Link | None:
        try:
            if isinstance(raw, list) and len(raw) >= 5:
                return _Link(raw[0], raw[1], int(raw[2]), raw[3], int(raw[4]), raw[5] if len(raw) > 5 else "*")
            if isinstance(raw, Mapping):
                return _Link(raw["id"], raw["origin_id"], int(raw["origin_slot"]), raw["target_id"],
                             int(raw["target_slot"]), raw.get("type", "*"))
        except (KeyError, TypeError, ValueError):
            pass
        if raw is None:
            return None  # the editor leaves holes for deleted links in old files
        raise self._error(f"{what} has a malformed link: {_short(raw)}")

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

    def _place(self, graph: _Graph, instance: _Exec | None, path: list[str]) -> None:
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
                definition = self.definitions[kind]
                placed.subgraph = self._graph(definition, definition, f"subgraph {definition.get('name') or kind}")
                self.execs[exec_id] = placed
                self._place(placed.subgraph, placed, [*path, str(node["id"])])
            else:
                self.execs[exec_id] = placed
            self.order.append(placed)

    def _skipped(self, node: _Exec) -> bool:
        """Inside a muted or bypassed subgraph instance nothing runs; frontend-only nodes never do."""
        if any(_mode(a.node) in (_MUTED, _BYPASSED) for a in _ancestors(node.instance)):
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
                f"node {node.id} is a group node ({kind!r}), which comfykit cannot convert",
                node.id,
                hint="In the editor, right-click the group node and choose 'Convert to nodes' "
                     "(or convert it to a subgraph), then save the workflow again.",
            )
        if _UUID.fullmatch(kind):
            raise self._error(
                f"node {node.id} is an instance of subgraph {kind}, but the file has no definition for it",
                node.id,
                hint="Save the workflow again from the editor; the subgraph definitions go in 'definitions.subgraphs'.",
            )
        raise self._error(
            f"node {node.id} has class {kind!r}, which the server does not know",
            node.id,
            hint="Install the custom node pack that provides it (e.g. with ComfyUI-Manager) and restart the server, "
                 "or pass the /object_info of a server that has it.",
        )

    def _widgets(self, node: _Exec) -> list[_Widget]:
        schema = self._schema(node)
        spec_root = schema.get("input")
        widgets: list[_Widget] = []
        if not isinstance(spec_root, Mapping):
            return widgets
        uploads: list[_Widget] = []
        for section in ("required", "optional"):
            inputs = spec_root.get(section)
            if not isinstance(inputs, Mapping):
                continue
            for name in _ordered_names(schema, section, inputs):
                spec = _spec(inputs[name])
                if spec is None or not _is_widget(spec):
                    continue
                kind, options = spec
                widgets.append(_Widget(str(name), spec, _companions(str(name), kind, options)))
                if section == "required" and any(options.get(o) for o in _UPLOAD_OPTIONS):
                    uploads.append(_Widget("upload", ("IMAGEUPLOAD", {}), 0, sent=False))
            if section == "required":
                # The editor appends the upload button after the required inputs.
                widgets += uploads
        return widgets

    def _widget_values(self, node: _Exec, widgets: list[_Widget]) -> dict[str, Any]:
        saved = node.node.get("widgets_values")
        values: dict[str, Any] = {}
        position = 0
        for widget in widgets:
            if isinstance(saved, Mapping):
                value = saved[widget.name] if widget.name in saved else _default(widget.spec)
            elif isinstance(saved, list) and position < len(saved):
                value = saved[position]
            else:
                value = _default(widget.spec)
            position += 1 + widget.companions
            if not widget.sent:
                continue
            value = self.primitive_values.get((node.id, widget.name), value)
            if widget.spec[1].get("dynamicPrompts") and isinstance(value, str):
                value = _dynamic_prompt(value, self.rng)
            if value is None:
                continue  # an editor widget without a value is not sent
            values[widget.name] = {"__value__": copy.deepcopy(value)} if isinstance(value, list) else copy.deepcopy(value)
        return values

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
                self.primitive_values[(target.id, name)] = value

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
        inputs = self._widget_values(node, widgets)
        saved_inputs = node.node.get("inputs") or []
        if not isinstance(saved_inputs, list):
            raise self._error(f"node {node.id}'s 'inputs' is not a list", node.id)
        for index, entry in enumerate(saved_inputs):
            if not isinstance(entry, Mapping) or not isinstance(entry.get("name"), str):
                raise self._error(f"node {node.id} has a malformed input: {_short(entry)}", node.id)
            resolved = self._resolve_input(node, index, set(), None)
            if resolved is None:
                continue
            if resolved.is_value:
                value = resolved.value
                inputs[entry["name"]] = {"__value__": copy.deepcopy(value)} if isinstance(value, list) else copy.deepcopy(value)
            else:
                inputs[entry["name"]] = [resolved.origin, resolved.slot]
        title = node.node.get("title")
        if not isinstance(title, str):
            schema = self._schema(node)
            kind = node.node["type"]
            title = schema.get("display_name") or EDITOR_DISPLAY_NAMES.get(kind) or schema.get("name") or kind
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
            return None
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
        if slot not in promoted:
            return None
        return _Resolved(value=promoted[slot], is_value=True)

    def _promoted(self, instance: _Exec) -> dict[int, Any]:
        """The values of a subgraph instance's widgets: one per boundary input that feeds an inner widget."""
        assert instance.subgraph is not None and instance.subgraph.definition is not None
        declared = _list(instance.subgraph.definition.get("inputs"))
        saved = instance.node.get("widgets_values")
        result: dict[int, Any] = {}
        sources: list[tuple[int, Any, _Widget | None]] = []
        for slot, boundary in enumerate(declared):
            source = self._inner_widget(instance, slot, boundary)
            if source is not None:
                sources.append((slot, *source))
        # Older editors saved a companion value after promoted seeds; only count it when present.
        with_companions = isinstance(saved, list) and len(saved) > len(sources)
        position = 0
        for slot, inner_value, widget in sources:
            if isinstance(saved, list) and position < len(saved):
                result[slot] = saved[position]
            elif isinstance(saved, Mapping) and isinstance(declared[slot], Mapping) and declared[slot].get("name") in saved:
                result[slot] = saved[declared[slot]["name"]]
            else:
                result[slot] = inner_value
            position += 1 + (widget.companions if with_companions and widget is not None else 0)
        return result

    def _inner_widget(self, instance: _Exec, slot: int, boundary: Any) -> tuple[Any, _Widget | None] | None:
        """The inner widget a subgraph input is linked to, and its own value, if any."""
        assert instance.subgraph is not None
        link_ids = boundary.get("linkIds") if isinstance(boundary, Mapping) else None
        for link_id in _list(link_ids):
            link = instance.subgraph.links.get(str(link_id))
            if link is None:
                continue
            inner = self.execs.get(f"{instance.id}:{link.target_id}")
            if inner is None or inner.subgraph is not None or inner.node["type"] in self.virtual:
                continue
            inputs = _list(inner.node.get("inputs"))
            if not 0 <= link.target_slot < len(inputs) or not isinstance(inputs[link.target_slot], Mapping):
                continue
            widget_ref = inputs[link.target_slot].get("widget")
            name = widget_ref.get("name") if isinstance(widget_ref, Mapping) else None
            if not isinstance(name, str) or inner.node["type"] not in self.object_info:
                continue
            widgets = self._widgets(inner)
            widget = next((w for w in widgets if w.name == name), None)
            if widget is None:
                continue
            values = self._widget_values(inner, widgets)
            return values.get(name), widget
        return None

    def _resolve_output(self, node: _Exec, slot: int, type_: Any, visited: set[str]) -> _Resolved | None:
        key = f"{node.id}[O]{slot}"
        if key in visited:
            raise self._error(f"node {node.id}: its links go round in a circle", node.id)
        visited.add(key)
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


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


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


def _ordered_names(schema: Mapping[str, Any], section: str, inputs: Mapping[str, Any]) -> list[str]:
    order = schema.get("input_order")
    listed = order.get(section) if isinstance(order, Mapping) else None
    if isinstance(listed, list) and set(listed) == set(inputs):
        return [str(n) for n in listed]
    return [str(n) for n in inputs]


def _spec(raw: Any) -> tuple[Any, Mapping[str, Any]] | None:
    if isinstance(raw, str):
        return raw, {}
    if not isinstance(raw, (list, tuple)) or not raw:
        return None
    options = raw[1] if len(raw) > 1 and isinstance(raw[1], Mapping) else {}
    return raw[0], options


def _is_widget(spec: tuple[Any, Mapping[str, Any]]) -> bool:
    kind, options = spec
    if options.get("forceInput"):
        return False
    return isinstance(kind, list) or (isinstance(kind, str) and kind in _WIDGET_TYPES | _EXTENSION_WIDGET_TYPES)


def _companions(name: str, kind: Any, options: Mapping[str, Any]) -> int:
    control = options.get("control_after_generate")
    if kind == "INT":
        return 1 if (control if control is not None else name in ("seed", "noise_seed")) else 0
    if isinstance(kind, list) or kind == "COMBO":
        return 2 if control else 0  # control_after_generate and control_filter_list
    return 0


def _default(spec: tuple[Any, Mapping[str, Any]]) -> Any:
    kind, options = spec
    if "default" in options and options["default"] is not None:
        return options["default"]
    if kind in ("INT", "FLOAT"):
        return 0
    if kind in ("STRING", "MARKDOWN"):
        return ""
    if kind == "BOOLEAN":
        return False
    choices = kind if isinstance(kind, list) else options.get("options")
    return choices[0] if isinstance(choices, list) and choices else None


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


def _dynamic_prompt(text: str, rng: random.Random) -> str:
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
        return _dynamic_prompt(options[int(rng.random() * len(options))], rng)

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
