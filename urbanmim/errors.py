"""One exception hierarchy for the whole platform, rendered to ProblemDetails in one place.

Errors are *raised*, never returned: any layer (query parser, store, service) raises
an :class:`NgsiError` subclass and ``urbanmim.ngsild.responses.problem_response`` turns
it into an RFC 7807 / NGSI-LD ProblemDetails body. Each class carries its HTTP status
and its NGSI-LD problem type, so the status of an error is decided where the error is
known, not where it is rendered.
"""

from __future__ import annotations

from typing import Any

ERRORS_BASE = "https://uri.etsi.org/ngsi-ld/errors/"


class NgsiError(Exception):
    """Base of every error the platform answers with (never a bare 500)."""

    status: int = 500
    problem: str = "InternalError"
    title: str = "Internal error"

    def __init__(self, detail: str = "", *, title: str | None = None, extra: dict[str, Any] | None = None):
        super().__init__(detail or self.title)
        self.detail = detail or self.title
        if title:
            self.title = title
        self.extra = extra or {}

    @property
    def type_uri(self) -> str:
        return ERRORS_BASE + self.problem

    def to_problem(self) -> dict[str, Any]:
        body: dict[str, Any] = {"type": self.type_uri, "title": self.title, "status": self.status,
                                "detail": self.detail}
        body.update(self.extra)
        return body


class InvalidRequest(NgsiError):
    """The request itself is malformed (bad JSON, bad query parameter syntax)."""

    status, problem, title = 400, "InvalidRequest", "Invalid request"


class BadRequestData(NgsiError):
    """The request is well-formed but its content is not acceptable NGSI-LD."""

    status, problem, title = 400, "BadRequestData", "Bad request data"


class ResourceNotFound(NgsiError):
    status, problem, title = 404, "ResourceNotFound", "Resource not found"


class AlreadyExists(NgsiError):
    status, problem, title = 409, "AlreadyExists", "Already exists"


class OperationNotSupported(NgsiError):
    status, problem, title = 422, "OperationNotSupported", "Operation not supported"


class UnprocessableContext(NgsiError):
    """A supplied JSON-LD @context is syntactically valid JSON but not a usable context."""

    status, problem, title = 400, "BadRequestData", "Invalid @context"


class TooManyResults(NgsiError):
    status, problem, title = 403, "TooManyResults", "Too many results"


class TooComplexQuery(NgsiError):
    status, problem, title = 403, "TooComplexQuery", "Query too complex"


class LdContextNotAvailable(NgsiError):
    """A remote @context could not be retrieved (a retrieved but invalid one is BadRequestData).

    HTTP 504 per V1.9.1 Table 6.3.2-1 (the broker is a gateway to the context's server);
    V1.8-era texts and older suite fixtures said 503.
    """

    status, problem, title = 504, "LdContextNotAvailable", "@context not available"


class NonexistentTenant(NgsiError):
    status, problem, title = 404, "NonexistentTenant", "Tenant does not exist"


class NotAcceptable(NgsiError):
    status, problem, title = 406, "InvalidRequest", "Not acceptable"


class UnsupportedMediaType(NgsiError):
    status, problem, title = 415, "InvalidRequest", "Unsupported media type"


class PayloadTooLarge(NgsiError):
    status, problem, title = 413, "RequestEntityTooLarge", "Request entity too large"


class MethodNotAllowed(NgsiError):
    status, problem, title = 405, "InvalidRequest", "Method not allowed"


class Conflict(NgsiError):
    status, problem, title = 409, "Conflict", "Conflict"


class InternalError(NgsiError):
    """Something broke that is our fault; the detail shown is generic, the cause is logged."""

    status, problem, title = 500, "InternalError", "Internal error"


# --- MIM6 security (urbanmim/security/). NGSI-LD's problem-type list has no 401/403/429 type; these
# use the same ".../errors/<Name>" form so every error keeps one shape (docs/security.md says why).

class Unauthorized(NgsiError):
    """No (valid) credentials: answered with a ``WWW-Authenticate: Bearer`` challenge."""

    status, problem, title = 401, "Unauthorized", "Authentication required"

    def __init__(self, detail: str = "", *, error: str | None = None, **kw: Any):
        super().__init__(detail, **kw)
        challenge = 'Bearer realm="urbanmim"'
        if error:                      # RFC 6750 §3: error="invalid_token" when a token was sent but refused
            challenge += f', error="{error}", error_description="{_quote(self.detail)}"'
        self.headers = {"WWW-Authenticate": challenge}


class Forbidden(NgsiError):
    """Authenticated, but this principal may not do this (role, attribute rule, agreement, consent)."""

    status, problem, title = 403, "Forbidden", "Forbidden"


class TooManyRequests(NgsiError):
    """The client's rate limit is exhausted: answered with ``Retry-After`` (seconds)."""

    status, problem, title = 429, "TooManyRequests", "Too many requests"

    def __init__(self, detail: str = "", *, retry_after: float = 1.0, **kw: Any):
        super().__init__(detail, **kw)
        self.headers = {"Retry-After": str(max(1, int(retry_after + 0.999)))}


def _quote(text: str) -> str:
    return text.replace("\\", "").replace('"', "'").encode("ascii", "replace").decode()[:300]
