"""The editor's conversion rules that differ between frontend versions, as tables.

Each table says which frontend file (of Comfy-Org/ComfyUI_frontend) the rule mirrors.  Supporting
the next frontend should mostly be a matter of adding a :class:`FrontendRules` entry here.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import attrs

__all__ = ["DEFAULT_FRONTEND", "FRONTENDS", "ExtensionWidget", "FrontendRules", "WidgetKind", "rules_for"]


@attrs.frozen
class WidgetKind:
    """How the editor builds a widget of one input type.

    :param takes_slot: ``widget.serialize !== false``: ``LGraphNode.configure`` hands it a saved value.
    :param emitted: ``options.serialize !== false``: ``graphToPrompt`` writes it into the prompt.
    :param default: the value when the spec has no ``default`` (``None``: the first combo option).
    :param constant: a value sent whatever was saved (IMAGECOMPARE).
    :param subwidgets: extra numeric widgets after the main one that take a slot and are not sent.
    :param control: a FLOAT/INT/COMBO ``control_after_generate`` companion can follow it.
    """

    takes_slot: bool = True
    emitted: bool = True
    default: Any = None
    constant: Any = None
    subwidgets: tuple[str, ...] = ()
    control: bool = False


@attrs.frozen
class ExtensionWidget:
    """A widget a frontend extension adds to some node classes, after the node's own widgets."""

    name: str
    classes: frozenset[str]
    takes_slot: bool
    emitted: bool
    value: Any = ""


@attrs.frozen
class FrontendRules:
    """Everything version-specific the converter needs for one frontend release."""

    version: str
    #: src/scripts/widgets.ts → ComfyWidgets (plus the vueNodes widget composables in 1.49)
    widget_kinds: Mapping[str, WidgetKind]
    #: widgets that extensions add in beforeRegisterNodeDef / onNodeCreated
    extension_widgets: tuple[ExtensionWidget, ...]
    #: src/core/graph/widgets/dynamicWidgets.ts (COMFY_DYNAMICCOMBO_V3)
    dynamic_combos: bool
    #: src/lib/litegraph/src/subgraph/subgraphDeduplication.ts → deduplicateSubgraphNodeIds
    renumbers_subgraph_ids: bool
    #: src/utils/executionUtil.ts → graphToPrompt: only a root-level muted/bypassed instance is skipped
    nested_instance_modes_ignored: bool
    #: src/extensions/core/load3d.ts → createPreview3DAdvancedExtension (the ``viewport_state`` widget)
    viewport_state_classes: frozenset[str]
    #: titles the frontend's own English node translations give (src/locales/en/nodeDefs.json),
    #: where they differ from the server's ``display_name``
    titles: Mapping[str, str]


_COMMON_KINDS: dict[str, WidgetKind] = {
    "INT": WidgetKind(default=0, control=True),
    "FLOAT": WidgetKind(default=0),
    "STRING": WidgetKind(default=""),
    "BOOLEAN": WidgetKind(default=False),
    "COMBO": WidgetKind(control=True),
    "MARKDOWN": WidgetKind(default=""),
    # Widgets whose queue-time value (a webcam capture, a 3D snapshot, a recording) a file cannot
    # reproduce: the saved value is sent as it is.
    "WEBCAM": WidgetKind(),
    "AUDIO_RECORD": WidgetKind(),
    "LOAD_3D": WidgetKind(),
    "LOAD_3D_ANIMATION": WidgetKind(),
}

# src/renderer/extensions/vueNodes/widgets/composables/use*Widget.ts (new in 1.49)
_KINDS_1_49: dict[str, WidgetKind] = {
    **_COMMON_KINDS,
    "FLOAT": WidgetKind(default=0, control=True),  # useFloatWidget.ts adds the companion too
    "IMAGECOMPARE": WidgetKind(takes_slot=False, constant=["", ""]),
    "COLOR": WidgetKind(default="#000000"),
    "PAINTER": WidgetKind(default=""),
    "CURVE": WidgetKind(),
    "BOUNDING_BOXES": WidgetKind(default=[]),
    "COLORS": WidgetKind(default=[]),
    "BOUNDING_BOX": WidgetKind(subwidgets=("x", "y", "width", "height")),
    "TEXTAREA": WidgetKind(default=""),
    "RANGE": WidgetKind(),
    "VIDEO_EDIT": WidgetKind(),
    "CHART": WidgetKind(),
    "GALLERIA": WidgetKind(),
    "COMPOSITOR": WidgetKind(),
}

_AUDIO_CLASSES = frozenset({"LoadAudio", "SaveAudio", "PreviewAudio", "SaveAudioMP3", "SaveAudioOpus"})
_3D_ADVANCED = frozenset({
    "Preview3DAdvanced", "Save3DAdvanced", "PreviewGaussianSplat", "PreviewPointCloud", "SaveGaussianSplat", "SavePointCloud",
})

FRONTENDS: dict[str, FrontendRules] = {
    "1.27.10": FrontendRules(
        version="1.27.10",
        widget_kinds={**_COMMON_KINDS, "IMAGECOMPARE": WidgetKind(takes_slot=False, constant=["", ""])},
        extension_widgets=(
            # src/extensions/core/load3d.ts (Comfy.Preview3D) and saveMesh.ts (Comfy.SaveGLB)
            ExtensionWidget("image", frozenset({"Preview3D", "Preview3DAnimation", "SaveGLB"}), takes_slot=True, emitted=True),
            # src/extensions/core/uploadAudio.ts (Comfy.AudioWidget): widget.serialize = false
            ExtensionWidget("audioUI", _AUDIO_CLASSES, takes_slot=False, emitted=True),
            # src/extensions/core/previewAny.ts: a multiline STRING added in onNodeCreated
            ExtensionWidget("preview", frozenset({"PreviewAny"}), takes_slot=False, emitted=True),
        ),
        dynamic_combos=False,
        renumbers_subgraph_ids=False,
        nested_instance_modes_ignored=False,
        viewport_state_classes=frozenset(),
        # only titles checked against the editor's own exports; other classes use display_name
        titles={"ImageScaleToTotalPixels": "Scale Image to Total Pixels", "ImageBlur": "Image Blur"},
    ),
    "1.49.6": FrontendRules(
        version="1.49.6",
        widget_kinds=_KINDS_1_49,
        extension_widgets=(
            ExtensionWidget("image", frozenset({"Preview3D", "SaveGLB"}), takes_slot=True, emitted=True),
            # uploadAudio.ts still adds audioUI, now with options.serialize = false: never sent
            ExtensionWidget("audioUI", _AUDIO_CLASSES | {"SaveAudioAdvanced"}, takes_slot=True, emitted=False),
        ),
        dynamic_combos=True,
        renumbers_subgraph_ids=True,
        nested_instance_modes_ignored=True,
        viewport_state_classes=_3D_ADVANCED,
        titles={
            "LTXVConcatAVLatent": "LTXVConcatAVLatent",
            "LTXVSeparateAVLatent": "LTXVSeparateAVLatent",
            "ByteDanceSeedreamNodeV2": "ByteDance Seedream 4.5 & 5.0",
            "ByteDance2ReferenceNode": "ByteDance Seedance 2.5 Reference to Video",
        },
    ),
}

#: the rules used when nothing says which frontend the server expects: the newest
DEFAULT_FRONTEND = "1.49.6"


def _key(version: str) -> tuple[int, ...]:
    parts = []
    for part in version.strip().lstrip("v").split("."):
        digits = "".join(ch for ch in part if ch.isdigit())
        parts.append(int(digits) if digits else 0)
    return tuple(parts)


def rules_for(version: str | None) -> FrontendRules:
    """The rules of the newest known frontend not newer than ``version`` (the newest for ``None``).

    A version older than every known one gets the oldest rules.
    """
    if version is None:
        return FRONTENDS[DEFAULT_FRONTEND]
    if version in FRONTENDS:
        return FRONTENDS[version]
    wanted = _key(version)
    known = sorted(FRONTENDS, key=_key)
    chosen = known[0]
    for candidate in known:
        if _key(candidate) <= wanted:
            chosen = candidate
    return FRONTENDS[chosen]
