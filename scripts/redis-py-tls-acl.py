"""redis-py, as a new user would use it, against the emulator's mutual-TLS and
ACL databases: only what the endpoints file and certificatesLocation give.

For each database: connect (verifying the server against certificatesLocation's
ca.crt, host names checked; client.crt and client.key where mutual TLS asks for
them; the endpoints file's user and password), check ACL WHOAMI, then rebind
the endpoint through the fault injector under traffic and check that the
client followed MOVING to the new node (its socket's peer is the address
MOVING named), with verification intact and no failed command.
"""

import json
import os
import sys
import threading
import time
import urllib.request
from urllib.parse import urlparse

import redis
from redis.maint_notifications import EndpointType, MaintNotificationsConfig

FI = os.environ["FAULT_INJECTION_API_URL"]
CONFIG = json.load(open(os.environ["REDIS_ENDPOINTS_CONFIG_PATH"]))
DATABASES = sys.argv[1:] or ["standalone0-mtls", "standalone0-acl-tls", "standalone0-acl"]


def fault_injector(method, path, body=None):
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(FI + path, data=data, method=method,
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=10) as r:
        return json.load(r)


def client_of(db):
    url = urlparse(db["endpoints"][0])
    kwargs = dict(
        host=url.hostname, port=url.port,
        username=db.get("username"), password=db.get("password"),
        protocol=3, socket_timeout=5, decode_responses=True,
        maint_notifications_config=MaintNotificationsConfig(
            enabled=True, endpoint_type=EndpointType.INTERNAL_IP),
    )
    if db["tls"]:
        certs = db["certificatesLocation"]
        kwargs.update(ssl=True, ssl_cert_reqs="required", ssl_check_hostname=True,
                      ssl_ca_certs=os.path.join(certs, "ca.crt"))
        cert, key = os.path.join(certs, "client.crt"), os.path.join(certs, "client.key")
        if os.path.exists(cert) and os.path.exists(key):
            kwargs.update(ssl_certfile=cert, ssl_keyfile=key)
    return redis.Redis(**kwargs)


def peers(client):
    pool = client.connection_pool
    with pool._lock:
        conns = list(pool._get_free_connections()) + list(pool._get_in_use_connections())
    return {c._sock.getpeername()[0] for c in conns if c._sock is not None}


def check(name):
    db = CONFIG[name]
    r = client_of(db)
    who = r.acl_whoami()
    assert who == (db.get("username") or "default"), f"{name}: ACL WHOAMI says {who}"
    r.set("maint-e2e:py:probe", "1")
    before = peers(r)
    errors, ops, stop = [], [0], threading.Event()

    def traffic():
        i = 0
        while not stop.is_set():
            try:
                r.set(f"maint-e2e:py:{i}", i)
                assert r.get(f"maint-e2e:py:{i}") == str(i)
                ops[0] += 2
            except Exception as e:  # every failure is reported
                errors.append(repr(e))
            i += 1
            time.sleep(0.01)

    t = threading.Thread(target=traffic)
    t.start()
    action = fault_injector("POST", "/action", {"type": "bind", "parameters": {"bdb_id": db["bdb_id"]}})
    deadline = time.time() + 60
    while True:
        status = fault_injector("GET", f"/action/{action['action_id']}")
        if status["status"] in ("success", "failed") or time.time() > deadline:
            break
        time.sleep(0.2)
    stop.set()
    t.join()
    after = peers(r)
    assert status["status"] == "success", f"{name}: the rebind ended {status}"
    assert not errors, f"{name}: {len(errors)} failed commands, first {errors[0]}"
    assert after and after.isdisjoint(before), f"{name}: connections still on {before & after}"
    assert r.acl_whoami() == who
    print(f"{name}: user {who}, tls={db['tls']}, moved {sorted(before)} -> {sorted(after)}, "
          f"{ops[0]} commands, 0 errors")
    r.close()


for name in DATABASES:
    check(name)
print("redis-py followed MOVING on", ", ".join(DATABASES), "with verification intact")
