#!/usr/bin/env python3
"""The maint-e2e driver for redis-py: protocol 1 of docs/DRIVERS.md.

One JSON object per line on standard input (a request), one per line on
standard output (a response, or an event). Requests run on worker threads,
so a slow one holds up no other; a response carries its request's id.
redis-py is configured only through its public settings, and observed only
through the event dispatcher its maintenance notifications configuration
takes (MaintenanceStartedEvent / MaintenanceCompletedEvent).
"""

import json
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import redis
from redis.backoff import NoBackoff
from redis.event import (
    EventDispatcher,
    EventListenerInterface,
    MaintenanceCompletedEvent,
    MaintenanceStartedEvent,
)
from redis.maint_notifications import EndpointType, MaintNotificationsConfig
from redis.retry import Retry

PROTOCOL = 1

# The settings of `create` this driver maps onto redis-py; any other is
# refused as not applicable, with its name.
SETTINGS = {
    "host",
    "port",
    "name",
    "maint",
    "endpoint_type",
    "response_timeout",
    "connect_timeout",
    "relaxed_timeout",
    "hand_off",
    "pool_size",
    "protocol",
    "username",
    "password",
    "tls",
    "retries",
}

# redis-py's notification classes, by the name the wire gives them.
KINDS = {
    "NodeMovingNotification": "MOVING",
    "NodeMigratingNotification": "MIGRATING",
    "NodeMigratedNotification": "MIGRATED",
    "NodeFailingOverNotification": "FAILING_OVER",
    "NodeFailedOverNotification": "FAILED_OVER",
    "OSSNodeMigratingNotification": "SMIGRATING",
    "OSSNodeMigratedNotification": "SMIGRATED",
}

_out = threading.Lock()


def emit(message):
    """Writes one line to standard output, whole."""
    line = json.dumps(message, separators=(",", ":"))
    with _out:
        sys.stdout.write(line + "\n")
        sys.stdout.flush()


class NotApplicable(Exception):
    """A request this client cannot express: the scenario is not applicable."""


class Observer(EventListenerInterface):
    """Forwards what redis-py's maintenance handlers dispatch, as events."""

    def __init__(self, client):
        self.client = client

    def listen(self, event):
        n = event.notification
        message = {
            "event": "relaxed" if isinstance(event, MaintenanceStartedEvent) else "unrelaxed",
            "client": self.client,
            "at": time.monotonic(),
            "connection": id(event.connection) if event.connection is not None else None,
            "state": getattr(event.state, "value", str(event.state)),
        }
        if n is not None:
            message["notification"] = {
                "kind": KINDS.get(type(n).__name__, type(n).__name__),
                "seq": getattr(n, "id", None),
            }
        emit(message)


def seconds(value):
    """A duration in the protocol (seconds, or null for none) as redis-py takes it."""
    return None if value is None else float(value)


class Driver:
    def __init__(self):
        self.clients = {}
        self.lock = threading.Lock()

    def hello(self, _req):
        return {
            "protocol": PROTOCOL,
            "client": "redis-py",
            "version": redis.__version__,
            "settings": sorted(SETTINGS),
        }

    def clock(self, _req):
        return {"now": time.monotonic()}

    def create(self, req):
        name = req["client"]
        unknown = sorted(set(req.get("settings", {})) - SETTINGS)
        if unknown:
            raise NotApplicable(f"redis-py's driver has no setting {', '.join(unknown)}")
        s = req["settings"]
        dispatcher = EventDispatcher()
        dispatcher.register_listeners(
            {
                MaintenanceStartedEvent: [Observer(name)],
                MaintenanceCompletedEvent: [Observer(name)],
            }
        )
        maint = {"enabled": True, "disabled": False, "auto": "auto"}[s.get("maint", "auto")]
        endpoint_type = s.get("endpoint_type")
        config = MaintNotificationsConfig(
            enabled=maint,
            proactive_reconnect=s.get("hand_off", True),
            relaxed_timeout=seconds(s["relaxed_timeout"]) if "relaxed_timeout" in s else 10,
            endpoint_type=EndpointType(endpoint_type) if endpoint_type else None,
            event_dispatcher=dispatcher,
        )
        kwargs = {
            "host": s["host"],
            "port": s["port"],
            "protocol": s.get("protocol", 3),
            "client_name": s.get("name", name),
            "decode_responses": True,
            "maint_notifications_config": config,
        }
        if "response_timeout" in s:
            kwargs["socket_timeout"] = seconds(s["response_timeout"])
        if "connect_timeout" in s:
            kwargs["socket_connect_timeout"] = seconds(s["connect_timeout"])
        if "retries" in s:
            kwargs["retry"] = Retry(NoBackoff(), s["retries"])
        if "username" in s:
            kwargs["username"] = s["username"]
        if "password" in s:
            kwargs["password"] = s["password"]
        tls = s.get("tls")
        if tls:
            verify = tls.get("verify", True)
            kwargs.update(
                connection_class=redis.SSLConnection,
                # No CA file: the system's roots.
                ssl_ca_certs=tls.get("ca_file"),
                ssl_certfile=tls.get("cert_file"),
                ssl_keyfile=tls.get("key_file"),
                ssl_cert_reqs="required" if verify else "none",
                ssl_check_hostname=verify,
            )
        # At most pool_size connections; a request waits for a free one, as
        # an application's threads share a pool.
        pool = redis.BlockingConnectionPool(
            max_connections=s.get("pool_size", 1), timeout=None, **kwargs
        )
        client = redis.Redis(connection_pool=pool)
        # Connected before the answer, as the suite's own clients are.
        client.ping()
        with self.lock:
            self.clients[name] = client
        return {}

    def client(self, req):
        with self.lock:
            c = self.clients.get(req["client"])
        if c is None:
            raise ValueError(f"no client {req['client']!r}; create it first")
        return c

    def command(self, req):
        c = self.client(req)
        started = time.monotonic()
        try:
            reply = c.execute_command(*req["args"])
            return {"outcome": "ok", "reply": plain(reply), "started": started, "ended": time.monotonic()}
        except redis.exceptions.RedisError as e:
            outcome = outcome_of(e)
            error = e
        return {
            "outcome": outcome,
            # A server's error reply in its own words; the client's errors
            # with their class.
            "error": server_words(error) if outcome == "server" else f"{type(error).__name__}: {error}",
            "started": started,
            "ended": time.monotonic(),
        }

    def close(self, req):
        with self.lock:
            c = self.clients.pop(req["client"], None)
        if c is not None:
            c.close()
            c.connection_pool.disconnect()
        return {}


def server_words(error):
    """A server's error reply as the server wrote it. redis-py takes the
    error code off the message (`NOPERM this user has no permissions ...`
    becomes `this user has no permissions ...`) and keeps it as the
    exception's `status_code`: it is put back."""
    text = str(error)
    code = getattr(error, "status_code", None)
    if code and not text.startswith(code):
        return f"{code} {text}"
    return text


def outcome_of(error):
    """How a request ended, by the class of redis-py's error."""
    for cls, outcome in (
        (redis.exceptions.TimeoutError, "timeout"),
        (redis.exceptions.ConnectionError, "connection"),
        (redis.exceptions.ResponseError, "server"),
    ):
        if isinstance(error, cls):
            return outcome
    return "other"


def plain(reply):
    """A reply as JSON: strings, integers, booleans, null, arrays; a map as pairs."""
    if isinstance(reply, (list, tuple, set)):
        return [plain(r) for r in reply]
    if isinstance(reply, dict):
        return [[plain(k), plain(v)] for k, v in reply.items()]
    if isinstance(reply, bytes):
        return reply.decode("utf-8", "replace")
    if isinstance(reply, float):
        return str(reply)
    return reply


def serve(driver, req, workers):
    rid = req.get("id")
    op = req.get("op")
    handler = getattr(driver, op, None) if op in OPS else None
    try:
        if handler is None:
            raise ValueError(f"unknown op {op!r}; protocol {PROTOCOL} has {', '.join(sorted(OPS))}")
        emit({"id": rid, "ok": True, **handler(req)})
    except NotApplicable as e:
        emit({"id": rid, "ok": False, "not_applicable": True, "error": str(e)})
    except Exception as e:  # every failure is answered, with its cause
        emit({"id": rid, "ok": False, "error": f"{type(e).__name__}: {server_words(e)}"})


OPS = {"hello", "clock", "create", "command", "close"}


def main():
    driver = Driver()
    with ThreadPoolExecutor(max_workers=512) as workers:
        for line in sys.stdin:
            line = line.strip()
            if not line:
                continue
            try:
                req = json.loads(line)
            except json.JSONDecodeError as e:
                emit({"id": None, "ok": False, "error": f"not JSON ({e}): {line[:200]}"})
                continue
            if req.get("op") == "bye":
                break
            workers.submit(serve, driver, req, workers)
        for c in list(driver.clients):
            driver.close({"client": c})
    emit({"event": "bye", "at": time.monotonic()})


if __name__ == "__main__":
    main()
