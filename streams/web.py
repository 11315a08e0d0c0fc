"""The worker's web server: query API, dashboard, metrics and probes.

Routes (JSON unless noted; errors are `{"error": {"code", "message"}}`):

    GET /                          the dashboard (HTML, self-contained)
    GET /customers                 list across all workers: ?status=&sort=&limit=&cursor=
    GET /customers/{id}            the customer's snapshot (spec section 6), from its owner
    GET /customers/{id}/alerts     the customer's recent alerts, newest first: ?limit=
    GET /alerts                    the newest alerts of all customers: ?limit=
    GET /internal/customers        this worker's own page of the list (for the fan-out)
    GET /internal/alerts           this worker's own newest alerts (for the fan-out)
    GET /metrics                   Prometheus text format
    GET /health                    liveness
    GET /ready                     recovery finished, partitions assigned, broker reachable

A customer lives on one partition, and one worker owns it: `/customers/{id}` asks
Faust's router which worker that is (the assignor knows every worker's URL) and
forwards the request there, headers included. Lists ask every worker for its own
page and merge them (models/query.py). With `api_token` set, every route but the
probes and /metrics wants `Authorization: Bearer <token>`; a browser opening the
dashboard may pass `?access_token=` instead (RFC 6750 section 2.3).
"""

from __future__ import annotations

import asyncio
import functools
import hmac
import logging
from collections.abc import Callable, Iterable
from importlib import resources
from typing import TYPE_CHECKING, Any

import aiohttp
import faust
from faust.exceptions import SameNode
from faust.web import Request, Response, View
from faust.web.exceptions import WebError
from prometheus_client import CONTENT_TYPE_LATEST
from yarl import URL

from models import query
from models.errors import QueryError
from streams.faust_private import aiokafka_producer
from streams.processor import IndexEntry

if TYPE_CHECKING:
    from streams.agents import Service

log = logging.getLogger(__name__)

OPEN_ROUTES = frozenset({"/health", "/ready", "/metrics"})
PEER_TIMEOUT_S = 10.0


@functools.cache
def dashboard_html() -> str:
    return resources.files("streams").joinpath("static/dashboard.html").read_text("utf-8")


class ApiView(View):
    """Bearer token check, JSON errors, and the service the routes answer from."""

    service: Service  # set on the subclass by `register`

    async def dispatch(self, request: Any) -> Any:
        if request.path not in OPEN_ROUTES and not self._authorized(request):
            return _error(
                self,
                401,
                "unauthorized",
                "this route needs Authorization: Bearer <token>",
                headers={"WWW-Authenticate": 'Bearer realm="profitwatch"'},
            )
        try:
            return await super().dispatch(request)
        except QueryError as exc:
            return _error(self, exc.status, exc.code, exc.message)

    async def on_request_error(self, request: Request, exc: WebError) -> Response:
        # Faust's own errors (405 and the like) in this API's error shape.
        return _error(self, exc.code, type(exc).__name__.lower(), str(exc.detail))

    def _authorized(self, request: Any) -> bool:
        token = self.service.settings.api_token
        if token is None:
            return True
        want = token.get_secret_value().encode("utf-8")
        header = request.headers.get("Authorization", "")
        scheme, _, given = header.partition(" ")
        if scheme.lower() == "bearer" and given:
            return hmac.compare_digest(given.strip().encode("utf-8"), want)
        given = request.query.get("access_token", "")
        return bool(given) and hmac.compare_digest(given.encode("utf-8"), want)


def _error(
    view: View, status: int, code: str, message: str, headers: dict[str, str] | None = None
) -> Response:
    return view.json({"error": {"code": code, "message": message}}, status=status, headers=headers)


class Dashboard(ApiView):
    async def get(self, request: Request) -> Response:
        return self.html(dashboard_html())


class CustomerList(ApiView):
    async def get(self, request: Request) -> Response:
        q = query.parse_list_query(request.query)
        params = q.params(request.query.get("cursor"))
        local = await _local_customers(self, q)
        bodies = await gather_from_workers(self, request, "/internal/customers", params, local)
        return self.json(query.merge_list_bodies(bodies, q))


class LocalCustomerList(ApiView):
    async def get(self, request: Request) -> Response:
        return self.json(await _local_customers(self, query.parse_list_query(request.query)))


class AlertFeed(ApiView):
    async def get(self, request: Request) -> Response:
        limit = _alerts_limit(request)
        local = await _local_alerts(self, limit)
        params = {"limit": str(limit)}
        bodies = await gather_from_workers(self, request, "/internal/alerts", params, local)
        alerts = query.newest_alerts((a for b in bodies for a in b["alerts"]), limit)
        return self.json({"alerts": alerts})


class LocalAlertFeed(ApiView):
    async def get(self, request: Request) -> Response:
        return self.json(await _local_alerts(self, _alerts_limit(request)))


class Customer(ApiView):
    async def get(self, request: Request, customer_id: str) -> Response:
        return await _from_owner(self, request, customer_id, self.service.processor.snapshot_of)


class CustomerAlerts(ApiView):
    async def get(self, request: Request, customer_id: str) -> Response:
        limit = _alerts_limit(request)  # a bad limit is a 400 here, before any routing

        def newest_first(cid: bytes) -> dict[str, Any] | None:
            alerts = self.service.processor.alerts_of(cid)
            if alerts is None:
                return None
            return {"customer_id": customer_id, "alerts": alerts[::-1][:limit]}

        return await _from_owner(self, request, customer_id, newest_first)


class Metrics(ApiView):
    async def get(self, request: Request) -> Response:
        # As a header: aiohttp refuses a content_type argument that carries a charset.
        body = self.service.metrics.exposition()
        return self.bytes(body, headers={"Content-Type": CONTENT_TYPE_LATEST})


class Health(ApiView):
    async def get(self, request: Request) -> Response:
        return self.json({"status": "ok"})


class Ready(ApiView):
    async def get(self, request: Request) -> Response:
        app = self.app
        recovered = app.tables.recovery.completed.is_set()  # type: ignore[attr-defined]
        assigned = bool(app.assignor.assigned_actives())
        broker = await _broker_reachable(app)
        body = {
            "ready": recovered and assigned and broker,
            "recovered": recovered,
            "assigned": assigned,
            "broker": broker,
        }
        return self.json(body, status=200 if body["ready"] else 503)


class NotFound(ApiView):
    async def get(self, request: Any, tail: str = "") -> Response:
        return _error(self, 404, "not_found", f"no route {request.path}; see the README's routes")


ROUTES: tuple[tuple[str, type[ApiView]], ...] = (
    ("/", Dashboard),
    ("/customers", CustomerList),
    ("/customers/{customer_id}", Customer),
    ("/customers/{customer_id}/alerts", CustomerAlerts),
    ("/alerts", AlertFeed),
    ("/internal/customers", LocalCustomerList),
    ("/internal/alerts", LocalAlertFeed),
    ("/metrics", Metrics),
    ("/health", Health),
    ("/ready", Ready),
    ("/{tail:.*}", NotFound),  # last: aiohttp matches in order
)


def register(app: faust.App, service: Service) -> None:
    for path, view in ROUTES:
        bound = type(view.__name__, (view,), {"service": service})
        app.page(path, name=f"profitwatch.{view.__name__}")(bound)


def _alerts_limit(request: Any) -> int:
    return query.parse_limit(request.query.get("limit"), query.DEFAULT_ALERTS, query.MAX_ALERTS)


async def _from_owner(
    view: ApiView,
    request: Any,
    customer_id: str,
    read: Callable[[bytes], dict[str, Any] | None],
) -> Response:
    """The owning worker's answer: forwarded there, or `read` here when this is it."""
    routed = await _route_to_owner(view, request, customer_id)
    if routed is not None:
        return routed
    body = read(customer_id.encode("utf-8"))
    return _unknown(view, customer_id) if body is None else view.json(body)


def _unknown(view: View, customer_id: str) -> Response:
    return _error(view, 404, "unknown_customer", f"no customer {customer_id!r} on record")


async def _route_to_owner(view: ApiView, request: Any, customer_id: str) -> Response | None:
    """The owner's answer, or None when this worker owns the customer."""
    try:
        return await view.app.router.route_req(
            view.service.table.name, customer_id.encode("utf-8"), view.web, request
        )
    except SameNode:
        return None
    except WebError:
        raise
    except KeyError:
        raise QueryError(
            "no worker owns this customer yet (starting or rebalancing)", 503, "unavailable"
        ) from None


def _peers(view: ApiView) -> list[URL]:
    hosts = set(view.app.router.table_metadata(view.service.table.name))
    me = str(view.app.conf.canonical_url)
    urls = sorted({URL(h) for h in hosts if URL(h) != URL(me)}, key=str)
    if not view.app.assignor.assigned_actives() and not urls:
        raise QueryError(
            "this worker has no partitions yet (starting or rebalancing)", 503, "unavailable"
        )
    return urls


async def gather_from_workers(
    view: ApiView, request: Any, path: str, params: dict[str, str], local: dict[str, Any]
) -> list[dict[str, Any]]:
    """This worker's own answer (`local`) and every other worker's answer to `path`.

    A worker that does not answer fails the request (503): a list silently missing
    a worker's customers would look complete and be wrong."""
    peers = _peers(view)
    headers = {}
    if "Authorization" in request.headers:
        headers["Authorization"] = request.headers["Authorization"]
    elif view.service.settings.api_token is not None:
        headers["Authorization"] = "Bearer " + view.service.settings.api_token.get_secret_value()

    async def ask(peer: URL) -> dict[str, Any]:
        url = peer.with_path(path).with_query(params)
        try:
            async with view.app.http_client.get(
                url, headers=headers, timeout=aiohttp.ClientTimeout(total=PEER_TIMEOUT_S)
            ) as resp:
                body = await resp.json()
                if resp.status != 200:
                    raise QueryError(
                        f"worker {peer} answered {resp.status}: {body}", 503, "unavailable"
                    )
                return dict(body)
        except QueryError:
            raise
        except (TimeoutError, OSError, ValueError) as exc:
            raise QueryError(f"worker {peer} did not answer: {exc!r}", 503, "unavailable") from None

    others = await asyncio.gather(*(ask(p) for p in peers))
    return [local, *others]


async def _local_entries(view: ApiView) -> Iterable[IndexEntry]:
    """This worker's customers for a list; a 503 while its partitions are moving, since
    its part would then be missing customers or hold another worker's."""
    _not_rebalancing(view)
    entries = (await view.service.processor.query_index()).values()
    _not_rebalancing(view)  # the index is read in chunks: still the same partitions?
    return entries


async def _local_customers(view: ApiView, q: query.ListQuery) -> dict[str, Any]:
    return query.list_body((e.row for e in await _local_entries(view)), q)


async def _local_alerts(view: ApiView, limit: int) -> dict[str, Any]:
    entries = await _local_entries(view)
    return {"alerts": query.newest_alerts((a for e in entries for a in e.alerts), limit)}


def _not_rebalancing(view: ApiView) -> None:
    if view.app.rebalancing:
        raise QueryError(
            "partitions are being reassigned between workers; ask again in a few seconds",
            503,
            "unavailable",
        )


async def _broker_reachable(app: Any) -> bool:
    """A metadata round trip through the producer's client (it runs on this event
    loop; the consumer's runs on its own thread), bounded in time."""
    try:
        client = aiokafka_producer(app).client
        return bool(await asyncio.wait_for(client.fetch_all_metadata(), timeout=3.0))
    except Exception as exc:  # any failure means: not ready to serve
        log.debug("broker check failed: %r", exc)
        return False
