"""Request dependencies: the service state and role checks."""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Annotated, Any

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from misuse.service.auth import TokenInfo, TokenStore, role_at_least
from misuse.service.backends import AnyStore
from misuse.service.config import ServiceConfig
from misuse.service.errors import ApiError
from misuse.service.metrics import Metrics
from misuse.service.sse import AlertHub
from misuse.service.stream import StreamProcessor

bearer = HTTPBearer(auto_error=False, description="An API token: `misuse token create --role viewer|analyst|admin`.")


@dataclass
class ServiceState:
    """Everything the routes share: one store connection (behind a lock), the processor, metrics."""

    cfg: ServiceConfig
    store: AnyStore
    lock: threading.RLock
    processor: StreamProcessor
    metrics: Metrics
    tokens: TokenStore
    hub: AlertHub
    workers: dict[str, Any] = field(default_factory=dict)


DEV_PRINCIPAL = TokenInfo("dev", "insecure-dev", "admin", "", "", "")


def state(request: Request) -> ServiceState:
    """The app's :class:`ServiceState`."""
    st: ServiceState = request.app.state.service
    return st


def require(role: str) -> Callable[..., TokenInfo]:
    """A dependency admitting requests whose bearer token has at least ``role``."""

    def check(request: Request, cred: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)]) -> TokenInfo:
        st = state(request)
        if st.cfg.insecure_dev:
            return DEV_PRINCIPAL
        if cred is None or cred.scheme.lower() != "bearer":
            raise ApiError(401, "missing bearer token (header 'Authorization: Bearer <token>')")
        info = st.tokens.verify(cred.credentials)
        if info is None:
            raise ApiError(401, "invalid or revoked token")
        if not role_at_least(info.role, role):
            raise ApiError(403, f"token '{info.name}' has role '{info.role}'; this needs '{role}' or higher")
        return info

    check.__name__ = f"require_{role}"
    return check


StateDep = Annotated[ServiceState, Depends(state)]
ViewerDep = Annotated[TokenInfo, Depends(require("viewer"))]
AnalystDep = Annotated[TokenInfo, Depends(require("analyst"))]
AdminDep = Annotated[TokenInfo, Depends(require("admin"))]
