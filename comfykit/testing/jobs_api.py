"""The jobs API of ComfyUI 0.33 (``/api/jobs``), computed on each request from the queue and the history."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from aiohttp import web

from comfykit.testing.validation import UUID_RE

if TYPE_CHECKING:
    from comfykit.testing.server import SimServer

__all__ = ["add_job_routes"]

STATUSES = ("pending", "in_progress", "completed", "failed", "cancelled")
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _json(data: Any, status: int = 200) -> web.Response:
    return web.Response(status=status, text=json.dumps(data), content_type="application/json", charset="utf-8")


def _error(text: str, status: int = 400, **extra: Any) -> web.Response:
    return _json({"error": text, **extra}, status)


def _times(entry: dict[str, Any]) -> tuple[int | None, int | None]:
    start = end = None
    for event, data in entry["status"]["messages"]:
        if event == "execution_start":
            start = data.get("timestamp")
        elif event in ("execution_success", "execution_error", "execution_interrupted"):
            end = data.get("timestamp")
    return start, end


def _count_outputs(outputs: dict[str, Any]) -> tuple[int, int, dict[str, Any] | None]:
    count = previewable = 0
    preview: dict[str, Any] | None = None
    text_preview: dict[str, Any] | None = None
    for node_id, ui in outputs.items():
        for kind, items in ui.items():
            for item in items:
                if isinstance(item, dict) and "filename" in item:
                    count += 1
                    if kind in ("images", "gifs", "videos", "audio"):
                        previewable += 1
                        candidate = {**item, "nodeId": node_id, "mediaType": kind}
                        if preview is None or (preview.get("type") != "output" and item.get("type") == "output"):
                            preview = candidate
                elif isinstance(item, str) and text_preview is None:
                    text_preview = {"content": item[:1024], "nodeId": node_id, "mediaType": "text"}
                    if len(item) > 1024:
                        text_preview["truncated"] = True
    return count, previewable, preview or text_preview


def _summary(server: SimServer, item: list[Any], status: str, entry: dict[str, Any] | None) -> dict[str, Any]:
    number, prompt_id, _prompt, extra_data, _outputs = item
    summary: dict[str, Any] = {
        "id": prompt_id,
        "status": status,
        "priority": number,
        "create_time": extra_data.get("create_time", server.create_times.get(prompt_id, 0)),
        "outputs_count": 0,
        "previewable_outputs_count": 0,
    }
    workflow_id = ((extra_data.get("extra_pnginfo") or {}).get("workflow") or {}).get("id")
    if workflow_id is not None:
        summary["workflow_id"] = workflow_id
    if entry is not None:
        start, end = _times(entry)
        count, previewable, preview = _count_outputs(entry["outputs"])
        summary.update(outputs_count=count, previewable_outputs_count=previewable)
        if start is not None:
            summary["execution_start_time"] = start
        if end is not None:
            summary["execution_end_time"] = end
        if preview is not None:
            summary["preview_output"] = preview
        for event, data in entry["status"]["messages"]:
            if event == "execution_error":
                summary["execution_error"] = data
    return summary


def _history_status(entry: dict[str, Any]) -> str:
    if entry["status"]["status_str"] == "success":
        return "completed"
    last = entry["status"]["messages"][-1][0] if entry["status"]["messages"] else ""
    return "cancelled" if last == "execution_interrupted" else "failed"


def _all_jobs(server: SimServer) -> list[tuple[dict[str, Any], dict[str, Any] | None]]:
    with server.lock:
        jobs: list[tuple[dict[str, Any], dict[str, Any] | None]] = []
        if server.running is not None:
            jobs.append((_summary(server, server.running, "in_progress", None), None))
        jobs += [(_summary(server, item, "pending", None), None) for item in server.pending]
        for entry in server.history.values():
            jobs.append((_summary(server, entry["prompt"], _history_status(entry), entry), entry))
    return jobs


def add_job_routes(server: SimServer, routes: list[tuple[str, str, Handler]]) -> None:
    async def list_jobs(request: web.Request) -> web.Response:
        query = request.query
        wanted = [s.strip().lower() for s in query.get("status", "").split(",") if s.strip()]
        bad = [s for s in wanted if s not in STATUSES]
        if bad:
            return _error(f"Invalid status value(s): {', '.join(bad)}. Valid values: {', '.join(STATUSES)}")
        sort_by = query.get("sort_by", "created_at")
        sort_order = query.get("sort_order", "desc")
        if sort_by not in ("created_at", "execution_duration"):
            return _error("sort_by must be 'created_at' or 'execution_duration'")
        if sort_order not in ("asc", "desc"):
            return _error("sort_order must be 'asc' or 'desc'")
        limit: int | None = None
        if "limit" in query:
            try:
                limit = int(query["limit"])
            except ValueError:
                return _error("limit must be an integer")
            if limit <= 0:
                return _error("limit must be a positive integer")
        try:
            offset = max(0, int(query.get("offset", 0)))
        except ValueError:
            return _error("offset must be an integer")
        jobs = [summary for summary, _ in _all_jobs(server)]
        if wanted:
            jobs = [j for j in jobs if j["status"] in wanted]
        if "workflow_id" in query:
            jobs = [j for j in jobs if j.get("workflow_id") == query["workflow_id"]]

        def key(job: dict[str, Any]) -> float:
            if sort_by == "created_at":
                return float(job["create_time"])
            end, start = job.get("execution_end_time"), job.get("execution_start_time")
            return float(end - start) if end is not None and start is not None else 0.0

        jobs.sort(key=key, reverse=sort_order == "desc")
        total = len(jobs)
        page = jobs[offset:offset + limit] if limit is not None else jobs[offset:]
        pagination = {"offset": offset, "limit": limit, "total": total, "has_more": offset + len(page) < total}
        return _json({"jobs": page, "pagination": pagination})

    async def get_job(request: web.Request) -> web.Response:
        job_id = request.match_info["job_id"]
        for summary, entry in _all_jobs(server):
            if summary["id"] == job_id:
                if entry is not None:
                    _number, _, prompt, extra_data, _ = entry["prompt"]
                    summary = {
                        **summary,
                        "outputs": entry["outputs"],
                        "execution_status": entry["status"],
                        "workflow": {"prompt": prompt, "extra_data": extra_data},
                    }
                return _json(summary)
        return _error("Job not found", 404)

    def cancel(job_id: str) -> bool:
        with server.lock:
            if server.running is not None and server.running[1] == job_id:
                server.interrupts.add(job_id)
                return True
            if server.remove_pending([job_id]):
                server.broadcast_status()
                return True
        return False

    async def cancel_one(request: web.Request) -> web.Response:
        return _json({"cancelled": cancel(request.match_info["job_id"])})

    async def cancel_many(request: web.Request) -> web.Response:
        try:
            body = json.loads(await request.text())
        except ValueError:
            return _error("Request body must be valid JSON")
        if not isinstance(body, dict) or not isinstance(body.get("job_ids"), list):
            return _error("job_ids must be a list")
        invalid = [i for i in body["job_ids"] if not (isinstance(i, str) and UUID_RE.fullmatch(i))]
        if invalid:
            return _error("job_ids contains invalid id(s)", invalid_ids=invalid)
        results = [cancel(job_id) for job_id in body["job_ids"]]
        return _json({"cancelled": any(results)})

    for prefix in ("/api", "/api/api"):
        routes.append(("GET", prefix + "/jobs", list_jobs))
        routes.append(("GET", prefix + "/jobs/{job_id}", get_job))
        routes.append(("POST", prefix + "/jobs/cancel", cancel_many))
        routes.append(("POST", prefix + "/jobs/{job_id}/cancel", cancel_one))
