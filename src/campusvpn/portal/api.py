"""The JSON API for automation: the console's actions behind admin bearer tokens.

FastAPI writes the OpenAPI document (/api/openapi.json) from the same models it validates with."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Depends, FastAPI, HTTPException, Query, Request
from fastapi.responses import JSONResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel, Field

from campusvpn.core.usernames import InvalidUsername
from campusvpn.portal import admin_ops
from campusvpn.service import accounts, api_tokens, sessions
from campusvpn.service.context import Context
from campusvpn.service.errors import Conflict, Forbidden, Invalid, NotFound, ServiceError, Unavailable

bearer = HTTPBearer(auto_error=False, description="An admin API token (create one in the admin console).")


class Problem(BaseModel):
    error: str = Field(description="What is wrong and what to do.")


class UserRow(BaseModel):
    username: str
    name: str | None
    status: str


class Reason(BaseModel):
    status: str = Field("", description="active, suspended or revoked")
    reason: str = Field("", max_length=500, description="Why (required except for active); kept in the audit trail.")


class ReasonOnly(BaseModel):
    reason: str = Field(min_length=1, max_length=500, description="Why; kept in the audit trail.")


class Done(BaseModel):
    ok: bool = True
    detail: str = ""


class PassIssued(BaseModel):
    one_time_pass: str
    expires: str


class ImportReport(BaseModel):
    applied: int
    errors: list[dict[str, Any]]


class CsvBody(BaseModel):
    csv: str = Field(max_length=4 * 1024 * 1024, description="The CSV text, header line first.")


ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"model": Problem},
    403: {"model": Problem},
    404: {"model": Problem},
    409: {"model": Problem},
    422: {"model": Problem},
}


def _ctx(request: Request) -> Context:
    ctx: Context = request.app.state.ctx
    return ctx


def admin(request: Request, creds: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)]) -> str:
    if creds is None:
        raise HTTPException(401, "send an admin token: Authorization: Bearer cvpn_…")
    owner = api_tokens.owner_of(_ctx(request), creds.credentials)
    if owner is None:
        raise HTTPException(401, "this token is unknown, expired or revoked, or its owner is no longer an admin")
    return owner


Admin = Annotated[str, Depends(admin)]


def create_api(ctx: Context) -> FastAPI:
    api = FastAPI(
        title=f"{ctx.config.service.name} admin API",
        version="1",
        openapi_url="/openapi.json",
        docs_url=None,
        redoc_url=None,
        description="Everything the admin console does, for scripts. Authenticate with an admin API token.",
    )
    api.state.ctx = ctx

    @api.exception_handler(HTTPException)
    async def http_error(_request: Request, exc: HTTPException) -> JSONResponse:
        return JSONResponse({"error": str(exc.detail)}, status_code=exc.status_code)

    @api.exception_handler(ServiceError)
    async def service_error(_request: Request, exc: ServiceError) -> JSONResponse:
        status = {NotFound: 404, Conflict: 409, Invalid: 422, Forbidden: 403, Unavailable: 503}.get(type(exc), 400)
        return JSONResponse({"error": str(exc)}, status_code=status)

    @api.exception_handler(InvalidUsername)
    async def bad_name(_request: Request, exc: InvalidUsername) -> JSONResponse:
        return JSONResponse({"error": str(exc)}, status_code=404)

    @api.get("/users", response_model=list[UserRow], responses=ERRORS, summary="Find users by user name or name")
    def find_users(actor: Admin, q: Annotated[str, Field(max_length=100)] = "") -> list[dict[str, Any]]:
        return accounts.search(ctx, q)

    @api.get("/users/{username}", responses=ERRORS, summary="One user: account, MFA, training, eligibility, sessions")
    def get_user(actor: Admin, username: str) -> dict[str, Any]:
        return admin_ops.user_detail(ctx, username)

    @api.post("/users/{username}/status", response_model=Done, responses=ERRORS, summary="Suspend, restore or revoke")
    def set_status(actor: Admin, username: str, body: Reason) -> Done:
        admin_ops.set_status(ctx, username, body.status, body.reason, actor=actor)
        return Done(detail=f"{username} is now {body.status}")

    @api.post("/users/{username}/mfa/reset", response_model=Done, responses=ERRORS, summary="Reset MFA (audited)")
    def reset_mfa(actor: Admin, username: str, body: ReasonOnly) -> Done:
        admin_ops.reset_mfa(ctx, username, body.reason, actor=actor)
        return Done(detail=f"MFA of {username} reset; they register again at the next sign-in")

    @api.post(
        "/users/{username}/recovery-pass",
        response_model=PassIssued,
        responses=ERRORS,
        summary="Issue a one-time recovery pass (after checking identity)",
    )
    def issue_pass(actor: Admin, username: str, body: ReasonOnly) -> PassIssued:
        code, until = admin_ops.issue_pass(ctx, username, body.reason, actor=actor)
        return PassIssued(one_time_pass=code, expires=until.isoformat())

    @api.get("/sessions", responses=ERRORS, summary="Live VPN sessions")
    def list_sessions(actor: Admin, user: Annotated[str | None, Field(max_length=100)] = None) -> list[dict[str, Any]]:
        return sessions.listing(ctx, username=user)

    @api.delete("/sessions/{session_id}", response_model=Done, responses=ERRORS, summary="End a VPN session")
    def kill_session(
        actor: Admin,
        session_id: str,
        reason: Annotated[str, Query(min_length=1, max_length=200, description="Why; audited, told to the client.")],
    ) -> Done:
        admin_ops.kill_session(ctx, session_id, reason, actor=actor)
        return Done(detail=f"session {session_id} ended")

    @api.post("/roster", response_model=ImportReport, responses=ERRORS, summary="Import a roster CSV (per-row report)")
    def roster(actor: Admin, body: CsvBody) -> dict[str, Any]:
        return admin_ops.import_roster(ctx, body.csv, actor=actor)

    @api.post(
        "/training",
        response_model=ImportReport,
        responses=ERRORS,
        summary="Import training completions (per-row report)",
    )
    def training(actor: Admin, body: CsvBody) -> dict[str, Any]:
        return admin_ops.import_training(ctx, body.csv, actor=actor)

    return api
