"""AceDataCloud's dialect: `POST /<svc>/videos`, `POST /<svc>/tasks`, unsigned callbacks.

Contracts: shared/providers/acedata-video.md (the live video services: routes, per-service
request fields and result bodies, the error shape) and shared/providers/acedata-sora.md (the
retired `/sora/*` route, which only this simulator still answers). Each service is a small
class in acedata_services.py: how it checks a create body and how its result body looks.
"""

from __future__ import annotations

import copy
import json
import re
import secrets
import time
import uuid
from typing import Any

import httpx

from devstack.simulator.acedata_services import SERVICES
from devstack.simulator.core import (
    FAILURE_MESSAGE,
    Answer,
    Job,
    ProviderSimulator,
    Request,
    Route,
    SimError,
    bad_request,
    check_bearer,
)

MAX_BATCH_IDS = 50


class AceData:
    name = "acedata"
    prefix = ""

    def __init__(self, sim: ProviderSimulator) -> None:
        self.sim = sim

    def routes(self) -> list[Route]:
        service = "|".join(map(re.escape, SERVICES))
        return [
            ("POST", re.compile(rf"/(?P<svc>{service})/videos"), self.create),
            ("POST", re.compile(rf"/(?P<svc>{service})/tasks"), self.tasks),
        ]

    def error_body(self, error: SimError) -> dict[str, Any]:
        """acedata-video.md, "Errors"."""
        return {
            "success": False,
            "error": {"code": error.code, "message": error.message},
            "trace_id": str(uuid.uuid4()),
        }

    def _authorize(self, request: Request) -> None:
        """acedata-video.md, "Transport": `Authorization: Bearer <token>`; none at all is a 400."""
        if request.headers.get("authorization", "").strip().lower() in ("", "bearer"):
            raise SimError(400, "no_token", "no token provided in the Authorization header")
        check_bearer(request, self.sim.config.api_token)

    def create(self, request: Request) -> Answer:
        """acedata-video.md, "POST /<svc>/videos (create)" (Sora: acedata-sora.md, same section)."""
        self._authorize(request)
        body = request.json()
        if not isinstance(body, dict):
            raise bad_request("request body must be a JSON object")
        service = SERVICES[request.groups["svc"]]
        shape = service.validate(body)
        callback_url, async_flag = service.delivery(body)
        now = time.time()
        record = {
            "id": str(uuid.uuid4()),
            "created_at": now,
            "started_at": now,
            "trace_id": str(uuid.uuid4()),
            "type": "videos",
            "request": copy.deepcopy(body),
        }
        job = self.sim.new_job(self.name, shape, record, record["id"])
        job.meta["service"] = service.name
        if callback_url is None and not async_flag:
            # Synchronous mode: the provider holds the request until the video is ready.
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
            response: dict[str, Any] = {
                "success": False,
                "error": {"code": "api_error", "message": FAILURE_MESSAGE},
            }
        else:
            response = {
                "success": True,
                **SERVICES[job.meta["service"]].success(job, self.sim.video_url(job)),
            }
        record["response"] = {"task_id": job.id, "trace_id": record["trace_id"], **response}
        record["finished_at"] = job.finished_at

    def _push(self, job: Job, url: str, kind: str) -> None:
        """The callback body is the synchronous result (acedata-video.md: "The callback"); AceData
        signs nothing, so a forged push is one that carries a wrong per-task token."""
        if kind == "progress":
            return  # AceData documents no progress pushes
        body = self.sim.record(job.id) or {}
        response = body.get("response") or {"success": True, "task_id": job.id}
        if kind in ("forged", "stale"):
            url = str(httpx.URL(url).copy_set_param("token", "forged-" + secrets.token_hex(8)))
        self.sim.deliver(job, url, json.dumps(response).encode(), {}, kind=kind)

    def _record(self, task_id: str, service: str) -> dict[str, Any] | None:
        # A service's lookup knows only its own tasks (inferred: upstream they live per service);
        # a relay that asks the wrong route sees "unknown", not another service's record.
        job = self.sim.job(task_id)
        if job is None or job.dialect != self.name or job.meta.get("service") != service:
            return None
        return self.sim.record(task_id)

    def tasks(self, request: Request) -> Answer:
        """acedata-video.md, "POST /<svc>/tasks (lookup)": retrieve and retrieve_batch."""
        self._authorize(request)
        service = request.groups["svc"]
        body = request.json()
        if not isinstance(body, dict):
            raise bad_request("request body must be a JSON object")
        action = body.get("action", "retrieve")
        if action == "retrieve":
            task_id = body.get("id")
            if not isinstance(task_id, str) or not task_id:
                raise bad_request("id is required for action retrieve")
            record = self._record(task_id, service)
            if record is None:
                # Undocumented upstream; a 404 lets clients tell "unknown" from "still running".
                raise SimError(404, "not_found", f"task {task_id} not found")
            return 200, record, {}
        if action == "retrieve_batch":
            ids = body.get("ids")
            if not isinstance(ids, list) or not all(isinstance(item, str) for item in ids):
                raise bad_request("ids must be a list of task id strings for action retrieve_batch")
            if len(ids) > MAX_BATCH_IDS:
                raise bad_request(f"ids accepts at most {MAX_BATCH_IDS} task ids, got {len(ids)}")
            # Unknown ids are left out, so count can be smaller than len(ids).
            items = [record for task_id in ids if (record := self._record(task_id, service)) is not None]
            return 200, {"items": items, "count": len(items)}, {}
        raise bad_request(f"action must be retrieve or retrieve_batch, got {action!r}")
