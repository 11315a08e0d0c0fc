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

A customer lives on one partition, and one worker owns it: `/customers/{id}` finds
that worker in Faust's router metadata (the assignor knows every worker's URL) and
forwards the request there, headers included. Lists ask every worker for its own
page and merge them (models/query.py). With `api_token` set, every route but the
probes and /metrics wants `Authorization: Bearer <token>`; a browser opening the
dashboard may pass `?access_token=` instead (RFC 6750 section 2.3).

While a worker starts, recovers its table, rebalances or stops, the routes that
read the table or the router answer 503 with a reason and Retry-After
(streams/availability.py) instead of a wrong or failed answer; /health, /metrics
and the dashboard page answer throughout, /ready says 503 and why.
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
from faust.types import TP
from faust.web import Request, Response, View
from faust.web.exceptions import WebError
from prometheus_client import CONTENT_TYPE_LATEST
from yarl import URL

from models import query
from models.errors import QueryError
from models.partitioner import partition_for
from streams.availability import Unavailable, WorkerState, peer_reason, unavailable_reason
from streams.faust_private import aiokafka_producer
from streams.processor import IndexEntry

if TYPE_CHECKING:
    from streams.agents import Service

log = logging.getLogger(__name__)

OPEN_ROUTES = frozenset({"/health", "/ready", "/metrics"})
PEER_TIMEOUT_S = 10.0
# Marks a request one worker forwarded to the customer's owner. An owner that does
# not think it owns the customer answers 503 rather than forward it on: two workers
# with different assignments (mid-rebalance) would otherwise pass it round in circles.
FORWARDED = "X-Profitwatch-Forwarded"
# Set by aiohttp for the forwarded request's own connection.
NOT_FORWARDED = frozenset(
    {"host", "content-length", "connection", "keep-alive", "transfer-encoding"}
)
# The owner's headers its answer keeps on the way back.
ANSWER_HEADERS = ("Content-Type", "Retry-After", "WWW-Authenticate")


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
        rebalances = self.app.rebalancing_count
        try:
            return await super().dispatch(request)
        except Unavailable as exc:
            return _unavailable(self, exc)
        except QueryError as exc:
            return _error(self, exc.status, exc.code, exc.message)
        except Exception as exc:
            # Faust's parts fail in their own ways while partitions move under a
            # request (a router without the topic's partitions, a store being
            # swapped): in that state it is a 503 to retry, not a server error.
            reason = unavailable_reason(worker_state(self.app))
            if reason is None and self.app.rebalancing_count != rebalances:
                reason = "rebalancing"
            if reason is None:
                log.exception("GET %s failed", request.path)
                return _error(self, 500, "internal", "internal error; see the worker's log")
            log.info("GET %s failed while %s: %r", request.path, reason, exc)
            return _unavailable(self, Unavailable(reason))

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


def _unavailable(view: View, exc: Unavailable) -> Response:
    return view.json(exc.body(), status=503, headers=exc.headers())


def worker_state(app: Any) -> WorkerState:
    """This worker's state, from Faust's public attributes only."""
    return WorkerState(
        stopping=app.should_stop,
        in_recovery=app.in_recovery,
        rebalancing=app.rebalancing,
        actives_ready=app.tables.actives_ready,
        rebalances=app.rebalancing_count,
    )


def _available(view: ApiView) -> int:
    """Raises `Unavailable` unless this worker can answer from its table and the
    router's metadata; returns the rebalance count, for `_unchanged` after an await."""
    reason = unavailable_reason(worker_state(view.app))
    if reason is not None:
        raise Unavailable(reason)
    return view.app.rebalancing_count


def _unchanged(view: ApiView, since: int) -> None:
    """Still available, and no rebalance began since `_available` gave `since`
    (one that began and ended within an await still moved the partitions)."""
    if _available(view) != since:
        raise Unavailable("rebalancing")


class Dashboard(ApiView):
    async def get(self, request: Request) -> Response:
        return self.html(dashboard_html())


class CustomerList(ApiView):
    async def get(self, request: Request) -> Response:
        q = query.parse_list_query(request.query)
        params = q.params(request.query.get("cursor"))
        since = _available(self)
        local = await _local_customers(self, q)
        bodies = await gather_from_workers(self, request, "/internal/customers", params, local)
        _unchanged(self, since)  # the parts were asked of one assignment
        return self.json(query.merge_list_bodies(bodies, q))


class LocalCustomerList(ApiView):
    async def get(self, request: Request) -> Response:
        return self.json(await _local_customers(self, query.parse_list_query(request.query)))


class AlertFeed(ApiView):
    async def get(self, request: Request) -> Response:
        limit = _alerts_limit(request)
        since = _available(self)
        local = await _local_alerts(self, limit)
        params = {"limit": str(limit)}
        bodies = await gather_from_workers(self, request, "/internal/alerts", params, local)
        _unchanged(self, since)
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
        broker = await _broker_reachable(app)
        state = worker_state(app)  # after the await: as of the answer
        assigned = bool(app.assignor.assigned_actives())
        reason = unavailable_reason(state)
        if reason is None and not assigned:
            reason = "no_partitions"
        if reason is None and not broker:
            reason = "broker_unreachable"
        body = {
            "ready": reason is None,
            "recovered": state.actives_ready and not state.in_recovery,
            "assigned": assigned,
            "broker": broker,
        }
        if reason is None:
            return self.json(body)
        exc = Unavailable(reason)
        return self.json(body | exc.body(), status=503, headers=exc.headers())


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
    _available(view)
    key = customer_id.encode("utf-8")
    owner = _owner_of(view, key)
    if owner is not None:
        return await _forward(view, request, owner)
    body = read(key)  # no await since the check: still this worker's partition
    return _unknown(view, customer_id) if body is None else view.json(body)


def _unknown(view: View, customer_id: str) -> Response:
    return _error(view, 404, "unknown_customer", f"no customer {customer_id!r} on record")


def _owner_of(view: ApiView, key: bytes) -> URL | None:
    """The URL of the worker owning `key`'s partition; None when it is this one.

    From the router's metadata (the assignment every worker received), with the
    partition from the service's own partitioner, the one the table writes by.
    Faust's `router.route_req` asks its producer instead, which knows a changelog's
    partitions only after writing to it: until then a `TypeError` (HTTP 500)."""
    table = view.service.table
    topic = table.changelog_topic.get_topic_name()
    partition = partition_for(key, view.service.settings.partitions)
    owners = {
        URL(host)
        for host, topics in view.app.router.table_metadata(table.name).items()
        if partition in topics.get(topic, ())
    }
    if len(owners) != 1:
        raise Unavailable(
            "rebalancing", f"{len(owners)} workers own partition {partition} of {topic} now"
        )
    (owner,) = owners
    if _ident(owner) != _ident(URL(str(view.app.conf.canonical_url))):
        return owner
    if TP(topic, partition) not in view.app.assignor.assigned_actives():
        raise Unavailable("rebalancing", f"partition {partition} of {topic} is on its way here")
    return None


def _ident(url: URL) -> tuple[str, int]:
    return (url.host or "", url.port or 80)


async def _forward(view: ApiView, request: Any, owner: URL) -> Response:
    """The owner's answer to this request, its status and headers kept."""
    if FORWARDED in request.headers:
        raise Unavailable(
            "rebalancing",
            f"{request.headers[FORWARDED]} forwarded this request here, and this worker "
            f"sees {owner} as the owner: the two are between assignments",
        )
    headers = {k: v for k, v in request.headers.items() if k.lower() not in NOT_FORWARDED}
    headers[FORWARDED] = str(view.app.conf.canonical_url)
    try:
        async with view.app.http_client.get(
            owner.join(request.rel_url),
            headers=headers,
            timeout=aiohttp.ClientTimeout(total=PEER_TIMEOUT_S),
        ) as resp:
            status, body = resp.status, await resp.read()
            kept = {h: resp.headers[h] for h in ANSWER_HEADERS if h in resp.headers}
    except (TimeoutError, OSError, aiohttp.ClientError) as exc:
        raise Unavailable(
            "worker_unavailable", f"the owner of this customer, {owner}, did not answer: {exc!r}"
        ) from None
    if status >= 500 and status != 503:
        raise Unavailable(
            "worker_unavailable", f"the owner of this customer, {owner}, answered {status}"
        )
    return view.bytes(body, status=status, headers=kept)


def _peers(view: ApiView) -> list[URL]:
    hosts = set(view.app.router.table_metadata(view.service.table.name))
    me = _ident(URL(str(view.app.conf.canonical_url)))
    urls = sorted({URL(h) for h in hosts if _ident(URL(h)) != me}, key=str)
    if not view.app.assignor.assigned_actives() and not urls:
        raise Unavailable("no_partitions", "no worker, this one included, has partitions")
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
                status, retry = resp.status, resp.headers.get("Retry-After", "")
                body = await resp.json(content_type=None)
        except (TimeoutError, OSError, ValueError, aiohttp.ClientError) as exc:
            raise Unavailable(
                "worker_unavailable", f"worker {peer} did not answer: {exc!r}"
            ) from None
        if status != 200:
            # Its own reason (starting, rebalancing, …) is this list's reason too.
            reason = (peer_reason(body) if status == 503 else None) or "worker_unavailable"
            raise Unavailable(
                reason,
                f"worker {peer} answered {status}: {body}",
                int(retry) if retry.isdigit() else None,
            )
        return dict(body)

    others = await asyncio.gather(*(ask(p) for p in peers))
    return [local, *others]


async def _local_entries(view: ApiView) -> Iterable[IndexEntry]:
    """This worker's customers for a list; a 503 while its partitions are moving or its
    table recovers, since its part would then be missing customers or hold another
    worker's."""
    since = _available(view)
    entries = (await view.service.processor.query_index()).values()
    _unchanged(view, since)  # the index is read in chunks: still the same partitions?
    return entries


async def _local_customers(view: ApiView, q: query.ListQuery) -> dict[str, Any]:
    return query.list_body((e.row for e in await _local_entries(view)), q)


async def _local_alerts(view: ApiView, limit: int) -> dict[str, Any]:
    entries = await _local_entries(view)
    return {"alerts": query.newest_alerts((a for e in entries for a in e.alerts), limit)}


async def _broker_reachable(app: Any) -> bool:
    """A metadata round trip through the producer's client (it runs on this event
    loop; the consumer's runs on its own thread), bounded in time."""
    try:
        client = aiokafka_producer(app).client
        return bool(await asyncio.wait_for(client.fetch_all_metadata(), timeout=3.0))
    except Exception as exc:  # any failure means: not ready to serve
        log.debug("broker check failed: %r", exc)
        return False
