"""AceDataCloud's dialect: `POST /<svc>/videos`, `POST /<svc>/tasks`, unsigned callbacks (contracts:
shared/providers/acedata-video.md, acedata-sora.md for the retired /sora/*; services: acedata_services.py)."""

from __future__ import annotations

import copy
import json
import re
import secrets
import time
import uuid
from typing import Any

import httpx

from devstack.simulator import core
from devstack.simulator.acedata_services import SERVICES
from devstack.simulator.core import Answer, Job, Request, SimError, refuse

MAX_BATCH_IDS = 50


class AceData:
    name = "acedata"
    prefix = ""

    def __init__(self, sim: core.ProviderSimulator) -> None:
        self.sim = sim

    def routes(self) -> list[core.Route]:
        service = "|".join(map(re.escape, SERVICES))
        return [
            ("POST", re.compile(rf"/(?P<svc>{service})/videos"), self.create),
            ("POST", re.compile(rf"/(?P<svc>{service})/tasks"), self.tasks),
        ]

    def error_body(self, error: SimError) -> dict[str, Any]:
        """acedata-video.md, "Errors"."""
        error_item = {"code": error.code, "message": error.message}
        return {"success": False, "error": error_item, "trace_id": str(uuid.uuid4())}

    def _body(self, request: Request) -> dict[str, Any]:
        """acedata-video.md, "Transport": `Authorization: Bearer <token>`; none at all is a 400."""
        if request.headers.get("authorization", "").strip().lower() in ("", "bearer"):
            raise SimError(400, "no_token", "no token provided in the Authorization header")
        core.check_bearer(request, self.sim.config.api_token)
        return core.json_object(request)

    def create(self, request: Request) -> Answer:
        """acedata-video.md, "POST /<svc>/videos (create)" (Sora: acedata-sora.md, same section)."""
        body = self._body(request)
        service = SERVICES[request.groups["svc"]]
        shape = service.validate(body)
        callback_url, async_flag = service.delivery(body)
        now, task_id = time.time(), str(uuid.uuid4())
        record = {"id": task_id, "created_at": now, "started_at": now, "trace_id": str(uuid.uuid4())}
        record |= {"type": "videos", "request": copy.deepcopy(body)}
        job = self.sim.new_job(self.name, shape, record, task_id)
        job.meta["service"] = service.name
        if callback_url is None and not async_flag:  # synchronous: held until the video is ready
            self.sim.wait(self.sim.config.callback_delay_s)
            self.sim.finish(job, self._finish)
            response = job.record["response"]
            return (200 if response["success"] else 500), response, {}
        if callback_url is None:  # async: the documented minimal answer, then lookups only
            self.sim.run(job, finish=self._finish)
            return 200, {"task_id": job.id}, {}
        self.sim.run(job, finish=self._finish, push=lambda job, kind: self._push(job, callback_url, kind))
        return 200, {"success": True, "task_id": job.id}, {}

    def _finish(self, job: Job) -> None:
        record = job.record
        if job.fault.fail:
            failure = {"code": "api_error", "message": core.FAILURE_MESSAGE}
            outcome: dict[str, Any] = {"success": False, "error": failure}
        else:
            outcome = {"success": True, **SERVICES[job.meta["service"]].success(job, self.sim.video_url(job))}
        record["response"] = {"task_id": job.id, "trace_id": record["trace_id"], **outcome}
        record["finished_at"] = job.finished_at

    def _push(self, job: Job, url: str, kind: str) -> None:
        """acedata-video.md, "The callback": the sync result, unsigned (forged = a wrong per-task token)."""
        if kind == "progress":
            return
        response = (self.sim.record(job.id) or {}).get("response") or {"success": True, "task_id": job.id}
        if kind in ("forged", "stale"):
            url = str(httpx.URL(url).copy_set_param("token", "forged-" + secrets.token_hex(8)))
        self.sim.deliver(job, url, json.dumps(response).encode(), {}, kind=kind)

    def _record(self, task_id: str, service: str) -> dict[str, Any] | None:
        # A service's lookup knows only its own tasks (inferred: upstream they live per service).
        job = self.sim.job(task_id, self.name)
        return self.sim.record(task_id) if job is not None and job.meta.get("service") == service else None

    def tasks(self, request: Request) -> Answer:
        """acedata-video.md, "POST /<svc>/tasks (lookup)": retrieve and retrieve_batch."""
        body, service = self._body(request), request.groups["svc"]
        action = body.get("action", "retrieve")
        if action == "retrieve":
            task_id = body.get("id")
            refuse(not isinstance(task_id, str) or not task_id, "id is required for action retrieve")
            if (record := self._record(task_id, service)) is None:
                # Undocumented upstream; a 404 lets clients tell "unknown" from "still running".
                raise SimError(404, "not_found", f"task {task_id} not found")
            return 200, record, {}
        if action == "retrieve_batch":
            ids = body.get("ids")
            if not isinstance(ids, list) or not all(isinstance(item, str) for item in ids):
                raise core.bad_request("ids must be a list of task id strings for action retrieve_batch")
            refuse(len(ids) > MAX_BATCH_IDS, f"ids accepts at most {MAX_BATCH_IDS} task ids, got {len(ids)}")
            # Unknown ids are left out, so count can be smaller than len(ids).
            items = [record for task_id in ids if (record := self._record(task_id, service)) is not None]
            return 200, {"items": items, "count": len(items)}, {}
        raise core.bad_request(f"action must be retrieve or retrieve_batch, got {action!r}")
