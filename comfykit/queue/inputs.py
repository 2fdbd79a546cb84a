"""Local input files for a workflow: which inputs they go to, and uploading each once per server.

``--input image=cat.png`` (or ``Job.inputs``) names an input by ``NODE.INPUT``
(node by id, title or class, as in updates) or by input name alone, which
means every node that has that input (``image`` reaches every LoadImage).
The file is uploaded to the server that runs the job, and the input is set
to the name the server answers with: ComfyUI renames a file on a name
collision, so the local name cannot be assumed.  Uploads are remembered by
content hash per client, so a batch of 1,000 jobs sharing one picture
uploads it once per server.
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from comfykit.errors import OutputError, WorkflowError
from comfykit.workflow.edit import find_node

if TYPE_CHECKING:
    from comfykit.outputs import OutputFile
    from comfykit.protocols import Client as ComfyUIClient

__all__ = ["UploadCache", "apply_inputs", "input_targets", "output_as_input"]

def input_targets(workflow: Mapping[str, Any], key: str) -> list[tuple[str, str]]:
    """The (node id, input name) pairs ``key`` addresses; raise :class:`WorkflowError` when none."""
    node, dot, name = key.rpartition(".")
    if dot and node:
        node_id = find_node(workflow, node.strip('"'))
        if name not in (workflow[node_id].get("inputs") or {}):
            raise WorkflowError(
                f"--input {key}: node {node_id} ({workflow[node_id].get('class_type')}) has no input {name!r}",
                node_id=node_id,
                hint=f"Its inputs are: {', '.join(sorted(workflow[node_id].get('inputs') or {})) or 'none'}.",
            )
        return [(node_id, name)]
    found = [
        (node_id, key) for node_id, node_data in workflow.items()
        if isinstance((node_data.get("inputs") or {}).get(key), str)
    ]
    if not found:
        raise WorkflowError(
            f"--input {key}: no node of this workflow has a file input called {key!r}",
            hint="Name the node too, e.g. --input 10.image=cat.png (see `comfykit validate` for node ids).",
        )
    return found


class UploadCache:
    """What was uploaded to one server, by content hash, so each file goes there once."""

    def __init__(self) -> None:
        self._names: dict[str, str] = {}
        self._lock = threading.Lock()

    def upload(self, client: ComfyUIClient, path: str | Path) -> str:
        """Upload ``path`` unless identical content is already there; return the server's name for it."""
        source = Path(path)
        try:
            content = source.read_bytes()
        except OSError as exc:
            raise WorkflowError(
                f"cannot read input file {source}: {exc.strerror or exc}", hint="Check the path given with --input."
            ) from None
        return self.upload_bytes(client, content, source.name)

    def upload_bytes(self, client: ComfyUIClient, content: bytes, filename: str) -> str:
        """Upload ``content`` as ``filename`` unless identical content is already there; return the server's name."""
        digest = hashlib.sha256(content).hexdigest()
        # Held during the upload: two jobs needing the same new file must not both upload it.
        with self._lock:
            known = self._names.get(digest)
            if known is not None:
                return known
            answer = client.upload_image(content, filename=filename)
            name = str(answer.get("name") or filename)
            if answer.get("subfolder"):
                name = f"{answer['subfolder']}/{name}"
            self._names[digest] = name
        return name


def apply_inputs(prompt: dict[str, Any], inputs: Mapping[str, str], client: ComfyUIClient, cache: UploadCache) -> None:
    """Upload each local file in ``inputs`` to ``client``'s server and point its inputs at it, in place."""
    for key, path in inputs.items():
        targets = input_targets(prompt, key)
        stored = cache.upload(client, path)
        for node_id, name in targets:
            prompt[node_id]["inputs"][name] = stored


def output_as_input(
    output: OutputFile,
    *,
    source: ComfyUIClient | None = None,
    target: ComfyUIClient | None = None,
    cache: UploadCache | None = None,
) -> str:
    """The value for a LoadImage-style input that uses a previous job's output (chaining).

    On the server that made it (``target`` absent or the same server as ``source``)
    nothing moves: ComfyUI reads ``sub/name.png [output]`` straight from its output
    folder.  For another server of a pool the file is copied across in memory
    (uploaded from ``source`` to ``target``, once per content) and the uploaded
    name is returned.
    """
    if not output.is_file or output.filename is None:
        raise OutputError(
            f"output {output.kind}[{output.index}] of node {output.node_id} is not a file",
            hint="Only file outputs (images, videos...) can feed another job's input.",
        )
    name = f"{output.subfolder}/{output.filename}" if output.subfolder else output.filename
    if target is None or (source is not None and source.base_url == target.base_url):
        return f"{name} [{output.folder_type}]"
    if source is None:
        raise OutputError("copying an output to another server needs the source client", hint="Pass source=client.")
    content = source.get_image(output.filename, output.subfolder, output.folder_type)
    cache = cache or UploadCache()
    return cache.upload_bytes(target, content, output.filename)
