"""The widgets the editor builds for one node, how saved values land on them, and what they send.

Mirrors, per frontend (see :mod:`comfykit_convert.rules`):

* ``src/workbench/utils/nodeDefOrderingUtil.ts`` → ``getOrderedInputSpecs``: widgets in
  ``input_order.required``, then ``input_order.optional`` order, then those extensions add;
* ``src/services/litegraphService.ts`` → ``addInputWidget``: the constructor is looked up by
  ``widgetType`` or the type, ``forceInput`` makes a socket only;
* ``src/scripts/widgets.ts`` / ``src/composables/widgets/*``: ``control_after_generate``
  companions, upload buttons, remote combos' refresh widgets;
* ``src/core/graph/widgets/dynamicWidgets.ts``: ``COMFY_DYNAMICCOMBO_V3`` children ``N.key``;
* ``src/extensions/core/customWidgets.ts``: ``CustomCombo``'s ``index`` and growing ``optionN``;
* ``src/lib/litegraph/src/LGraphNode.ts`` → ``configure``: saved values are handed one by one to
  the *live* widget list, skipping widgets that do not serialize;
* ``src/utils/litegraphUtil.ts`` → ``migrateWidgetsValues``: values saved for ``forceInput`` inputs.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping
from typing import Any

import attrs

from comfykit_convert.camera import restored_camera
from comfykit_convert.rules import FrontendRules, WidgetKind

__all__ = ["NodeWidgets", "Widget", "input_spec"]

_DYNAMIC_COMBO = "COMFY_DYNAMICCOMBO_V3"
_CONTROL = WidgetKind(emitted=False)  # control_after_generate, control_filter_list, upload, toggles
_BUTTON = WidgetKind(emitted=True)  # a remote combo's refresh button: sent with the value it was given
_MEDIA_UPLOADS = ("image_upload", "video_upload", "animated_image_upload")
_CUSTOM_COMBO = "CustomCombo"
# src/extensions/core/load3d/CameraManager.ts → getCameraState of a fresh perspective camera
_DEFAULT_CAMERA: Mapping[str, Any] = {
    "position": {"x": 10, "y": 10, "z": 10.000000000000002}, "target": {"x": 0, "y": 0, "z": 0}, "zoom": 1,
    "cameraType": "perspective",
    "quaternion": {"x": -0.2798481423331213, "y": 0.3647051996310008, "z": 0.11591689595929511, "w": 0.8804762392171493},
    "fov": 35, "aspect": 1, "near": 0.01, "far": 10000, "frustum": {"left": -5, "right": 5, "top": 5, "bottom": -5},
}


@attrs.define(eq=False)  # widgets are found by identity: two can hold equal values
class Widget:
    """One live widget: its input name, value and behaviour."""

    name: str
    value: Any
    kind: WidgetKind
    options: Mapping[str, Any] = attrs.field(factory=dict)
    type: str = ""
    #: the options of a dynamic combo (``[{key, inputs}]``); setting the value rebuilds ``name.*``
    dynamic: list[Mapping[str, Any]] | None = None
    #: ``index`` of a CustomCombo ignores what it is given; ``option`` grows the list
    role: str = ""


def input_spec(raw: Any) -> tuple[Any, Mapping[str, Any]] | None:
    """``(type, options)`` of a raw ``/object_info`` input spec, or ``None`` when it is not one."""
    if isinstance(raw, str):
        return raw, {}
    if not isinstance(raw, (list, tuple)) or not raw:
        return None
    options = raw[1] if len(raw) > 1 and isinstance(raw[1], Mapping) else {}
    return raw[0], options


def _widget_type(kind: Any, options: Mapping[str, Any]) -> str | None:
    widget_type = options.get("widgetType")
    if isinstance(widget_type, str):
        return widget_type
    if isinstance(kind, list):
        return "COMBO"
    return kind if isinstance(kind, str) else None


def _choices(kind: Any, options: Mapping[str, Any]) -> list[Any]:
    found = kind if isinstance(kind, list) else options.get("options")
    return found if isinstance(found, list) else []


def _has_control(name: str, widget_type: str, options: Mapping[str, Any]) -> bool:
    control = options.get("control_after_generate")
    if widget_type == "INT" and control is None:
        return name in ("seed", "noise_seed")  # the whole name: `sampling_mode.seed` gets none
    return bool(control)


def _default(widget_type: str, kind: Any, options: Mapping[str, Any], behaviour: WidgetKind) -> Any:
    if widget_type == "COMBO":
        # `spec.default || options[0]`: a falsy default falls back to the first option
        choices = _choices(kind, options)
        return options.get("default") or (choices[0] if choices else ("Loading..." if options.get("remote") else None))
    if options.get("default") is not None:
        return copy.deepcopy(options["default"])
    return copy.deepcopy(behaviour.default)


class NodeWidgets:
    """The widget list of one node of a known class, built and configured as the editor does."""

    def __init__(self, class_type: str, schema: Mapping[str, Any], rules: FrontendRules,
                 properties: Mapping[str, Any] | None = None) -> None:
        self.class_type = class_type
        self.rules = rules
        self.properties = properties if isinstance(properties, Mapping) else {}
        self.widgets: list[Widget] = []
        #: every input (socket or widget) the node defines now, dynamic-combo children included
        self.defined: set[str] = set()
        #: migrateWidgetsValues' view of the inputs: (forceInput, values it counts) per widget or forceInput input
        self._saved_inputs: list[tuple[bool, int]] = []
        self._upload = False
        for section, name, raw in _ordered_specs(schema):
            created = self._create(name, raw)
            spec = input_spec(raw)
            force = spec is not None and bool(spec[1].get("forceInput"))
            if created or force:
                control = spec is not None and (bool(spec[1].get("control_after_generate")) or name in ("seed", "noise_seed"))
                self._saved_inputs.append((force, 2 if control else 1))
            self.widgets += created
            for widget in created:
                if widget.dynamic is not None:
                    self._expand(widget)
            if section == "required" and not self._upload:
                self._upload = _wants_upload(name, raw)
        if self._upload:
            self.widgets.append(Widget("upload", None, _CONTROL, type="IMAGEUPLOAD"))
        self._add_extension_widgets()

    # ------------------------------------------------------------------ building

    def _create(self, name: str, raw: Any) -> list[Widget]:
        self.defined.add(name)
        spec = input_spec(raw)
        if spec is None:
            return []
        kind, options = spec
        widget_type = _widget_type(kind, options)
        if widget_type == _DYNAMIC_COMBO and self.rules.dynamic_combos:
            choices = [o for o in _choices(kind, options) if isinstance(o, Mapping)]
            keys = [o.get("key") for o in choices]
            combo = WidgetKind()
            return [Widget(name, keys[0] if keys else None, combo, {"options": keys}, "COMBO", dynamic=choices)]
        behaviour = self.rules.widget_kinds.get(widget_type or "")
        if behaviour is None:
            return []
        companions = 0
        if behaviour.control and _has_control(name, widget_type or "", options):
            companions = 2 if widget_type == "COMBO" else 1
        if options.get("forceInput"):
            return []
        main = Widget(name, _default(widget_type or "", kind, options, behaviour), behaviour, options, widget_type or "")
        created = [main]
        created += [Widget(sub, 0, _CONTROL, type="INT") for sub in behaviour.subwidgets]
        for companion in ("control_after_generate", "control_filter_list")[:companions]:
            created.append(Widget(companion, "fixed" if companion == "control_after_generate" else "", _CONTROL))
        remote = options.get("remote")
        if widget_type == "COMBO" and isinstance(remote, Mapping):
            created.append(Widget("Auto-refresh after generation", False, _CONTROL, type="toggle"))
            if remote.get("refresh_button"):
                created.append(Widget("refresh", None, _BUTTON, type="button"))
        return created

    def _add_extension_widgets(self) -> None:
        for extension in self.rules.extension_widgets:
            if self.class_type in extension.classes:
                behaviour = WidgetKind(takes_slot=extension.takes_slot, emitted=extension.emitted)
                self.widgets.append(Widget(extension.name, copy.deepcopy(extension.value), behaviour, type="extension"))
        if self.class_type == _CUSTOM_COMBO:
            self.widgets.append(Widget("index", 0, WidgetKind(), type="INT", role="index"))
            self.widgets.append(Widget("option1", "", WidgetKind(), type="STRING", role="option"))

    def _expand(self, parent: Widget) -> None:
        """Rebuild a dynamic combo's ``parent.*`` children for its current value, right after it."""
        prefix = parent.name + "."
        self.widgets = [w for w in self.widgets if not w.name.startswith(prefix)]
        self.defined = {n for n in self.defined if not n.startswith(prefix)}
        option = next((o for o in parent.dynamic or () if o.get("key") == parent.value), None)
        inputs = option.get("inputs") if isinstance(option, Mapping) else None
        if not isinstance(inputs, Mapping):
            return
        children: list[Widget] = []
        for section in ("required", "optional"):
            entries = inputs.get(section)
            if isinstance(entries, Mapping):
                for child, raw in entries.items():
                    children += self._create(prefix + str(child), raw)
        at = self.widgets.index(parent) + 1
        self.widgets[at:at] = children
        for child in children:
            if child.dynamic is not None:
                self._expand(child)

    # ------------------------------------------------------------------ saved values

    def configure(self, saved: Any) -> None:
        """Apply a node's ``widgets_values`` (a list, or a mapping by name in some old files)."""
        if isinstance(saved, Mapping):
            for widget in list(self.widgets):
                if widget.name in saved and widget in self.widgets:
                    self._set(widget, saved[widget.name])
            return
        if not isinstance(saved, list):
            return
        values = self._migrated(saved)
        position = index = 0
        while index < len(self.widgets) and position < len(values):
            widget = self.widgets[index]
            if widget.kind.takes_slot:
                self._set(widget, values[position])
                position += 1
            index += 1

    def _migrated(self, saved: list[Any]) -> list[Any]:
        """Drop values an older editor saved for ``forceInput`` inputs (when the count says it did).

        Like ``migrateWidgetsValues`` the count gives an input with a (possible) control widget two
        values, yet inputs and values are then paired one to one, position by position.
        """
        if len(saved) != sum(n for _, n in self._saved_inputs):
            return saved
        forced = [force for force, _ in self._saved_inputs]
        return [value for index, value in enumerate(saved) if not (index < len(forced) and forced[index])]

    def _set(self, widget: Widget, value: Any) -> None:
        if widget.role == "index":
            return  # its setter ignores the value; it is computed when sent
        widget.value = value
        if widget.dynamic is not None:
            self._expand(widget)
        elif widget.role == "option" and widget is self.widgets[-1] and value not in ("", None):
            self.widgets.append(Widget(f"option{len(self.widgets) - 1}", "", WidgetKind(), type="STRING", role="option"))

    def find(self, name: str) -> Widget | None:
        return next((w for w in self.widgets if w.name == name), None)

    # ------------------------------------------------------------------ what is sent

    def sent_values(self, overrides: Mapping[str, Any], prompts: Callable[[str], str]) -> dict[str, Any]:
        """The ``inputs`` the widgets contribute, in widget order, as ``graphToPrompt`` writes them."""
        values: dict[str, Any] = {}
        for widget in self.widgets:
            if not widget.kind.emitted or not widget.name:
                continue
            value = self._serialized(widget, overrides, prompts)
            if value is None:
                continue  # an undefined value vanishes from the JSON
            values[widget.name] = {"__value__": value} if isinstance(value, list) else value
        return values

    def _serialized(self, widget: Widget, overrides: Mapping[str, Any], prompts: Callable[[str], str]) -> Any:
        if widget.kind.constant is not None:
            return copy.deepcopy(widget.kind.constant)
        if widget.role == "index":
            chosen = self.find("choice")
            choice = chosen.value if chosen is not None else None
            options = [w.value for w in self.widgets if w.role == "option"]
            return options.index(choice) if choice in options else -1
        if widget.type == "LOAD_3D" and self.class_type in self.rules.viewport_state_classes:
            return self._viewport_state()
        value = copy.deepcopy(overrides.get(widget.name, widget.value))
        if widget.options.get("dynamicPrompts") and isinstance(value, str):
            value = prompts(value)
        if widget.type == "CURVE" and isinstance(value, list):
            return {"__type__": "CURVE", "__value__": value}
        return value

    def _viewport_state(self) -> dict[str, Any]:
        config = self.properties.get("Camera Config")
        state = config.get("state") if isinstance(config, Mapping) else None
        camera = restored_camera(copy.deepcopy(state)) if isinstance(state, Mapping) else copy.deepcopy(dict(_DEFAULT_CAMERA))
        return {"image": "", "mask": "", "normal": "", "camera_info": camera, "recording": "", "model_3d_info": []}


def _wants_upload(name: str, raw: Any) -> bool:
    """Only the first required media combo gets an upload button; the audio one only for ``audio``."""
    spec = input_spec(raw)
    if spec is None or _widget_type(*spec) != "COMBO":
        return False
    options = spec[1]
    return any(options.get(o) for o in _MEDIA_UPLOADS) or (bool(options.get("audio_upload")) and name == "audio")


def _ordered_specs(schema: Mapping[str, Any]) -> list[tuple[str, str, Any]]:
    root = schema.get("input")
    if not isinstance(root, Mapping):
        return []
    order = schema.get("input_order")
    found: list[tuple[str, str, Any]] = []
    for section in ("required", "optional"):
        inputs = root.get(section)
        if not isinstance(inputs, Mapping):
            continue
        listed = order.get(section) if isinstance(order, Mapping) else None
        names = [str(n) for n in listed] if isinstance(listed, list) and set(listed) == set(inputs) else [str(n) for n in inputs]
        found += [(section, name, inputs[name]) for name in names]
    return found
