"""``comfykit serve``: the ComfyUI simulator, with one option per fault and timing knob.

The knob options are made from :class:`comfykit.testing.Knobs` itself (each field's
type and its ``metadata["help"]``), so a new knob is an option the moment it exists;
and only when ``serve``'s options are needed, because the knobs module loads the
simulator (aiohttp).
"""

from __future__ import annotations

from typing import Any

import click

__all__ = ["ServeCommand", "knob_options", "serve"]

#: Option types of the knobs' annotations (``X | None`` counts as ``X``); any other is read as text.
KNOB_TYPES: dict[str, type] = {"int": int, "float": float, "str": str, "bool": bool}


class ServeCommand(click.Command):
    """A command whose knob options are added the first time click asks for its parameters."""

    _knobs_added = False

    def get_params(self, ctx: click.Context) -> list[click.Parameter]:
        if not self._knobs_added:
            self._knobs_added = True
            self.params.extend(knob_options())
        return super().get_params(ctx)


def knob_options() -> list[click.Option]:
    """One option per public field of ``Knobs``, typed from its annotation, helped by its metadata."""
    import attrs

    from comfykit.testing.knobs import Knobs

    options: list[click.Option] = []
    for field in attrs.fields(Knobs):
        if field.name.startswith("_"):
            continue
        annotation = str(field.type).replace(" ", "")
        kind = KNOB_TYPES.get(annotation.removesuffix("|None"), str)
        flag = "--" + field.name.replace("_", "-")
        names = [f"{flag}/--no-{flag[2:]}" if kind is bool else flag, field.name]
        options.append(click.Option(names, type=None if kind is bool else kind, default=field.default,
                                    show_default=True, help=field.metadata.get("help")))
    return options


@click.command(cls=ServeCommand)
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", default=8188, show_default=True, type=int, help="Port to listen on (0: any free port).")
@click.option("--comfyui-version", type=click.Choice(["0.3.64", "0.33.0"]), default="0.33.0", show_default=True,
              help="Which recorded ComfyUI version to pose as.")
@click.option("--root", type=click.Path(file_okay=False), default=None,
              help="Folder for input/output/temp files (default: a temporary folder).")
def serve(host: str, port: int, comfyui_version: str, root: str | None, **knobs: Any) -> None:
    """Run the ComfyUI simulator (for tests and trying comfykit without a GPU).

    Every fault and timing knob of comfykit.testing.Knobs is an option.
    """
    from comfykit.testing import serve as run_simulator

    run_simulator(host=host, port=port, comfyui_version=comfyui_version, root=root, **knobs)
