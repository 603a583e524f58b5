"""Information about the broker itself: /info/sourceIdentity (clause 5.15) and the home page."""

from __future__ import annotations

import time
import uuid

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from urbanmim import __version__
from urbanmim.ngsild import http
from urbanmim.ngsild.contexts import CORE

_STARTED = time.time()
_IDENTITY = f"urn:ngsi-ld:ContextSourceIdentity:{uuid.uuid4()}"


async def source_identity(request: Request) -> Response:
    media = http.negotiate(request)
    tenant = http.tenant_of(request)
    uptime = int(time.time() - _STARTED)
    body = {
        "id": _IDENTITY,
        "type": "ContextSourceIdentity",
        "contextSourceExtras": {"product": "urbanmim", "version": __version__},
        "contextSourceUptime": f"PT{uptime}S",
        "contextSourceTimeAt": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "contextSourceAlias": request.app.state.settings.host,
    }
    return http.respond(body, CORE, media, tenant=tenant or None)


async def home(request: Request) -> Response:
    body = {"name": "urbanmim", "version": __version__, "ngsi-ld": "/ngsi-ld/v1/", "docs": "see README.md"}
    banner = getattr(request.app.state, "security_banner", None)     # MIM6: open on loopback, said loudly
    if banner:
        body["warning"] = banner
    return Response(http.dumps(body), media_type=http.JSON)


routes = [Route("/info/sourceIdentity", source_identity, methods=["GET"])]
