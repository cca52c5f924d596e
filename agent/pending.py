"""Pending plans: mutating calls made from outside the planner (an MCP client), waiting for an operator.

A front end that is not the terminal (the MCP server) can't ask for approval
itself, so it turns a mutating call into a sealed one-step :class:`Plan`
(:func:`plan_for_call`, the same steps and facts the planner queues), writes
the ``request`` and ``plan`` audit records, and stores it here.  Another
process — ``cloudisense approve ID``, or the TUI — approves it and runs it
through the agent's approval gate and executor (:func:`execute_pending`),
which write ``approval``, ``step`` and ``execution`` to the same audit log
under the same audit session.

Storage: one JSON file per plan in ``STATE/plans/ID.json``, where STATE is
``$CLOUDISENSE_STATE_DIR``, else ``$XDG_STATE_HOME/cloudisense``, else
``~/.local/state/cloudisense``.  STATE is created 0700 (exactly, whatever
the umask) and must be a directory of the current user that group and
others can't enter; anything else is refused with
:class:`~cloudisense.node._files.UnsafePath`, whose one-line message says
the fix (``chmod 700 STATE``).  Plan files are 0600, replaced atomically
(a new file, then ``rename``; never written through a symlink); every
status change happens under an exclusive ``flock`` on ``ID.lock``, so two
approvers can't both run a plan.

What approve acts on is inside the plan hash: the steps, and the plan's
``context`` (the node URL it connects to with the operator's token, the
audit log and session its records go to, and who asked), which must equal
the record's ``url``, ``audit``, ``session`` and ``requested_by``.  A file
that contradicts its own hash shows as ``tampered`` and can't be approved;
``approve --hash`` pins the content the operator saw.

Status: ``pending`` → ``approved`` (claimed, running) → ``done`` | ``failed``
| ``stale`` | ``refused``; or ``pending`` → ``rejected`` | ``expired``
(a pending plan older than its TTL is shown as expired and can't be approved).
A file whose content no longer matches its hash is shown as ``tampered``.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
import secrets
import time
from pathlib import Path
from typing import Any, Iterator, Literal

from pydantic import BaseModel, Field

from cloudisense.node._files import check_private_dir, private_dir, replace_file
from cloudisense.tools import ClusterView, PreparedCall, SelectionError, ToolError

from ._agent import Agent
from ._audit import AuditLog, current_user, default_audit_path
from ._executor import ExecutionReport
from ._model import ModelError, ModelReply
from ._plan import Approval, NotApproved, Plan, PlanStep, make_fact

Status = Literal["pending", "approved", "done", "failed", "stale", "refused", "rejected", "expired"]
DEFAULT_TTL = 3600.0
_ID_RE = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
CONTEXT = ("url", "audit", "session", "requested_by")  # the record fields approve acts on, hashed in plan.context


def default_state_dir() -> Path:
    env = os.environ.get("CLOUDISENSE_STATE_DIR")
    if env:
        return Path(env)
    state = Path(os.environ.get("XDG_STATE_HOME") or Path.home() / ".local" / "state")
    return state / "cloudisense"


class PendingError(Exception):
    """A pending plan that can't be found, or can't make the transition asked for (the message says why)."""

    def __init__(self, code: Literal["unknown_plan", "not_pending", "expired", "hash_mismatch", "tampered"],
                 message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class PendingPlan(BaseModel):
    id: str
    status: Status = "pending"
    created: float = Field(default_factory=time.time)
    updated: float = Field(default_factory=time.time)
    expires: float
    source: str = "mcp"
    requested_by: str = ""
    url: str = Field("", description="the node the plan was made through")
    audit: str = Field("", description="audit log the plan's records go to")
    session: str = Field("", description="audit session of the plan's records")
    plan: Plan
    approval: Approval | None = None
    report: ExecutionReport | None = None
    message: str = ""

    @property
    def hash(self) -> str:
        return self.plan.hash

    def integrity_error(self) -> str | None:
        """Why this record contradicts its own hash (None: it doesn't)."""
        if self.plan.hash != self.plan.compute_hash():
            return "its steps or context no longer match its hash"
        changed = [k for k in CONTEXT if getattr(self, k) != self.plan.context.get(k, "")]
        if changed:
            return f"its {', '.join(changed)} differ from what the hash covers"
        return None

    def effective_status(self, now: float | None = None) -> str:
        if self.status == "pending" and self.integrity_error():
            return "tampered"
        if self.status == "pending" and (now or time.time()) > self.expires:
            return "expired"
        return self.status

    def summary(self) -> dict[str, Any]:
        """What a client is shown: the steps, the decision and the results."""
        status = self.effective_status()
        doc: dict[str, Any] = {
            "plan_id": self.id, "status": status, "hash": self.plan.hash, "request": self.plan.request,
            "created": self.created, "updated": self.updated, "requested_by": self.requested_by, "url": self.url,
            "steps": [{"step": s.index, "nodes": s.targets, "service": s.service, "method": s.method,
                       "params": s.params, "reason": s.reason, "target": s.target_text, "why": s.fact.why}
                      for s in self.plan.steps],
        }
        if status == "pending":
            doc["expires"] = self.expires
            doc["approve_with"] = f"cloudisense approve {self.id}"
        if self.approval is not None:
            doc["approval"] = {"approver": self.approval.approver, "via": self.approval.via, "ts": self.approval.ts}
        if self.report is not None:
            doc["execution"] = {"status": self.report.status, "message": self.report.message,
                                "results": [r.model_dump(mode="json") for r in self.report.results]}
        if self.message:
            doc["message"] = self.message
        return doc


class PendingStore:
    """Pending plans on disk, shared by the processes of one operator (see the module doc)."""

    def __init__(self, root: str | os.PathLike[str] | None = None, *, ttl: float = DEFAULT_TTL) -> None:
        self.root = Path(root) if root is not None else default_state_dir()
        self.dir = self.root / "plans"
        self.ttl = ttl
        self._checked = False

    def _ensure(self) -> None:
        """The state directory exists, is ours and is 0700 (else :class:`UnsafePath`); ``plans/`` too."""
        if self._checked:
            return
        check_private_dir(self.root, "state directory")
        private_dir(self.dir)
        if os.stat(self.dir).st_mode & 0o077:  # made by an older version under a loose umask
            os.chmod(self.dir, 0o700)
        self._checked = True

    def _path(self, plan_id: str) -> Path:
        if not _ID_RE.match(plan_id or ""):
            raise PendingError("unknown_plan", f"{plan_id!r} is not a plan id")
        return self.dir / f"{plan_id}.json"

    @contextlib.contextmanager
    def _locked(self, plan_id: str) -> Iterator[None]:
        self._ensure()
        self._path(plan_id)  # validates the id
        fd = os.open(self.dir / f"{plan_id}.lock", os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
        try:
            os.fchmod(fd, 0o600)
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)  # releases the lock

    def _write(self, rec: PendingPlan) -> None:
        replace_file(self._path(rec.id), rec.model_dump_json(indent=1).encode(), 0o600)

    def _read(self, plan_id: str) -> PendingPlan:
        self._ensure()
        path = self._path(plan_id)
        try:
            return PendingPlan.model_validate_json(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise PendingError("unknown_plan", f"there is no plan {plan_id!r} in {self.dir}") from None

    # ---- public ------------------------------------------------------------------------------

    def add(self, plan: Plan, *, url: str = "", requested_by: str = "", audit: str = "", session: str = "",
            source: str = "mcp", status: Status = "pending") -> PendingPlan:
        """Store ``plan``; its ``context`` becomes url/audit/session/requested_by (re-sealed if it changes:
        seal it with that context first, as :func:`plan_for_call` does, if its hash was already shown)."""
        self._ensure()
        context = {"url": url, "audit": audit, "session": session, "requested_by": requested_by}
        if not plan.hash or plan.context != context:
            plan.context = context
            plan.seal()
        while True:
            plan_id = secrets.token_hex(4)
            if not self._path(plan_id).exists():
                break
        rec = PendingPlan(id=plan_id, status=status, expires=time.time() + self.ttl, source=source,
                          requested_by=requested_by, url=url, audit=audit, session=session, plan=plan)
        with self._locked(plan_id):
            self._write(rec)
        return rec

    def get(self, plan_id: str) -> PendingPlan:
        return self._read(plan_id)

    def list(self, status: str | None = None) -> list[PendingPlan]:
        """Plans, oldest first; ``status`` filters on the effective status (expiry applied)."""
        self._ensure()
        out = []
        for p in self.dir.glob("*.json"):
            try:
                rec = PendingPlan.model_validate_json(p.read_text(encoding="utf-8"))
            except (OSError, ValueError):
                continue  # a file being replaced, or not ours
            if status is None or rec.effective_status() == status:
                out.append(rec)
        return sorted(out, key=lambda r: (r.created, r.id))

    def check(self) -> None:
        """Refuse an unsafe state directory now (:class:`UnsafePath`), before a server starts serving."""
        self._ensure()

    @staticmethod
    def _approvable(rec: PendingPlan, expect_hash: str | None) -> None:
        if rec.status == "pending" and (why := rec.integrity_error()):
            raise PendingError("tampered", f"plan {rec.id} was changed after it was made ({why}); "
                                           "nothing was executed")
        status = rec.effective_status()
        if status != "pending":
            raise PendingError("expired" if status == "expired" else "not_pending",
                               f"plan {rec.id} is {status}, not pending; nothing was executed")
        if expect_hash and not rec.plan.hash.startswith(expect_hash.lower()):
            raise PendingError("hash_mismatch", f"plan {rec.id} has hash {rec.plan.hash[:12]}, not "
                                                f"{expect_hash}; nothing was executed")

    def preflight(self, plan_id: str, *, expect_hash: str | None = None) -> PendingPlan:
        """The plan, if :meth:`claim` would take it now (else the same :class:`PendingError`); changes nothing.

        ``approve`` calls this before it connects anywhere, so a refused plan
        never gets the operator's token sent to its URL.
        """
        rec = self._read(plan_id)
        self._approvable(rec, expect_hash)
        return rec

    def claim(self, plan_id: str, *, expect_hash: str | None = None) -> PendingPlan:
        """pending → approved, atomically; only one caller ever gets a given plan."""
        with self._locked(plan_id):
            rec = self._read(plan_id)
            if rec.effective_status() == "expired" and rec.status == "pending":
                rec.status, rec.updated, rec.message = "expired", time.time(), "expired before anyone approved it"
                self._write(rec)
            self._approvable(rec, expect_hash)
            rec.status, rec.updated = "approved", time.time()
            self._write(rec)
            return rec

    def finish(self, plan_id: str, *, approval: Approval | None, report: ExecutionReport) -> PendingPlan:
        with self._locked(plan_id):
            rec = self._read(plan_id)
            rec.status, rec.updated = report.status, time.time()
            rec.approval, rec.report, rec.message = approval, report, report.message
            self._write(rec)
            return rec

    def reject(self, plan_id: str, *, by: str | None = None, feedback: str = "", via: str = "cli") -> PendingPlan:
        with self._locked(plan_id):
            rec = self._read(plan_id)
            status = rec.effective_status()
            if status not in ("pending", "tampered"):  # a tampered plan can be rejected (not approved)
                raise PendingError("expired" if status == "expired" else "not_pending",
                                   f"plan {plan_id} is {status}, not pending")
            who = by or current_user()
            rec.status, rec.updated = "rejected", time.time()
            rec.message = f"rejected by {who} via {via}" + (f": {feedback}" if feedback else "")
            self._write(rec)
        if status == "tampered":  # its audit path is not to be trusted: the default log gets the record
            AuditLog(default_audit_path()).write("rejection", plan_hash=rec.plan.hash, feedback=feedback, by=who,
                                                 via=via, plan_id=plan_id, tampered=True)
        elif rec.audit:
            AuditLog(rec.audit, session=rec.session or None).write(
                "rejection", plan_hash=rec.plan.hash, feedback=feedback, by=who, via=via, plan_id=plan_id)
        return rec


# ---- plans from single calls -------------------------------------------------------------------

def plan_for_call(prepared: PreparedCall, view: ClusterView, *, request: str, model: str = "mcp",
                  context: dict[str, str] | None = None) -> Plan:
    """A sealed one-step plan for a validated mutating call: the step and facts the planner would queue.

    ``context`` (url, audit, session, requested_by: where it will run and be
    recorded) is sealed into the hash; pass what :meth:`PendingStore.add` will get.
    """
    try:
        fact = make_fact(view, prepared.node, prepared.selector)
    except SelectionError as e:
        raise ToolError("no_match", str(e)) from None
    step = PlanStep(index=1, kind=prepared.kind, node=prepared.node, selector=prepared.selector,
                    service=prepared.service, method=prepared.method, params=prepared.params,
                    reason=prepared.reason, mutates=True, fact=fact)
    return Plan(request=request, steps=[step], summary=prepared.reason, model=model, context=context or {}).seal()


def audit_plan(audit: AuditLog, plan: Plan, *, via: str, **extra: Any) -> None:
    """The ``request`` and ``plan`` records, shaped as the agent writes them for ``cloudisense ask``."""
    audit.write("request", request=plan.request, model=plan.model, via=via, **extra)
    audit.write("plan", plan_hash=plan.hash, model=plan.model, steps=[s.model_dump(mode="json") for s in plan.steps],
                summary=plan.summary, via=via, **extra)


class _PlannedElsewhere:
    """The :class:`Agent` wants a model; these plans were made outside the planner, so it is never asked."""

    name = "mcp"

    async def complete(self, messages: list[dict[str, Any]], tools: list[dict[str, Any]]) -> ModelReply:
        raise ModelError("this plan came from an MCP client; it is approved or rejected, never re-planned")


async def run_plan(conn: Any, plan: Plan, *, audit: AuditLog, via: str, max_nodes: int = 10,
                   timeout: float = 10.0) -> tuple[Approval, ExecutionReport]:
    """Approve ``plan`` and run it through the agent's gate and executor (audited as ``cloudisense ask`` is)."""
    agent = Agent(conn, _PlannedElsewhere(), audit=audit, max_nodes=max_nodes, timeout=timeout)
    approval = agent.approve(plan, via=via)
    try:
        report = await agent.execute(plan, approval)
    except NotApproved as e:  # audited as "refused" by the agent
        report = ExecutionReport(status="refused", message=str(e))
    return approval, report


async def execute_pending(store: PendingStore, plan_id: str, conn: Any, *, via: str,
                          audit_path: str | os.PathLike[str] | None = None, expect_hash: str | None = None,
                          max_nodes: int = 10, timeout: float = 10.0) -> PendingPlan:
    """Approve a pending plan and execute it (``cloudisense approve ID``, the TUI).

    Claims the plan first (raises :class:`PendingError` if it is unknown,
    expired, not pending, tampered or has another hash); the approval, each step and
    the execution go to the plan's audit log (or ``audit_path``) under the
    audit session that recorded the plan.
    """
    rec = store.claim(plan_id, expect_hash=expect_hash)
    audit = AuditLog(audit_path or rec.audit or default_audit_path(), session=rec.session or None)
    try:
        approval, report = await run_plan(conn, rec.plan, audit=audit, via=via, max_nodes=max_nodes,
                                          timeout=timeout)
    except BaseException as e:  # never leave a claimed plan looking as if it is still running
        store.finish(plan_id, approval=None,
                     report=ExecutionReport(status="failed", message=f"execution aborted ({type(e).__name__}: {e}); "
                                                                  "steps may have run: see the audit log"))
        raise
    return store.finish(plan_id, approval=approval, report=report)
