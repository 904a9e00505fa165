"""Three ``voicebank serve`` replicas of one shared library (a real PostgreSQL and SeaweedFS S3 server) behind
nginx terminating TLS on loopback, configured as docs/shared-store.md says (issue 19): the proxy round-robins
over the replicas, and 50 clients mixing uploads, downloads, renames and deletes through it for 30 s see no
5xx but deliberate 429/503, find every acknowledged upload afterwards, never get a stale 304 after a change, and
leave a library that checks clean."""

from __future__ import annotations

import random
import threading
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from voicebank.library import Library

from cluster_fixtures import PostgresServer, S3Server, SharedLocation
from faults import build_library
from proxy_helpers import Proxy, upload
from replica_helpers import Replica, until

CLIENTS = 50
LOAD_SECONDS = 30.0
PROPAGATION_S = 1.0
"""The documented bound for another replica to see a change (docs/shared-store.md): a 304 for a voice renamed or
deleted longer ago than this is stale."""


@dataclass
class Cluster:
    location: SharedLocation
    replicas: list[Replica]
    proxy: Proxy


@pytest.fixture(scope="module")
def cluster(postgres_server: PostgresServer, s3_server: S3Server, golden_weights_dir: Path,
            tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    """One shared library (alice, bob: audio mode; carol: a voice file), three replicas (one extraction worker each)
    and nginx in front of them, for the module's tests."""
    tmp = tmp_path_factory.mktemp("proxy-cluster")
    name = f"vb_proxy_{id(tmp) % 10**8}"
    postgres_server.execute(f"CREATE DATABASE {name} TEMPLATE template0")
    s3_server.client().create_bucket(Bucket=name.replace("_", "-"))
    location = SharedLocation(postgres_server.url(name), f"s3://{name.replace('_', '-')}/library")
    with pytest.MonkeyPatch.context() as mp:
        for key, value in s3_server.env().items():
            mp.setenv(key, value)
        for key in ("VOICEBANK_LIBRARY", "VOICEBANK_BLOBS", "VOICEBANK_WEIGHTS", "VOICEBANK_KEYS_FILE"):
            mp.delenv(key, raising=False)
        mp.setenv("VOICEBANK_NO_PROGRESS", "1")
        mp.setenv("HF_HUB_OFFLINE", "1")
        build_library(location.catalogue, blobs=location.blobs)
        replicas = [Replica(location.catalogue, location.blobs, golden_weights_dir, tmp / r, "--workers", "1",
                            "--queue", "8", keys_file=tmp / "keys.json") for r in ("a", "b", "c")]
        proxy = None
        try:
            for r in replicas:
                r.wait_ready()
            proxy = Proxy([f"127.0.0.1:{r.port}" for r in replicas], tmp / "nginx").wait_ready()
            yield Cluster(location, replicas, proxy)
        finally:
            if proxy is not None:
                proxy.stop()
            for r in replicas:
                r.stop()
            postgres_server.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


def test_nginx_terminates_tls_and_round_robins_over_three_replicas(cluster):
    proxy = cluster.proxy
    addresses = {f"127.0.0.1:{r.port}" for r in cluster.replicas}
    with pytest.raises(httpx.ConnectError):  # the certificate is checked: an unverified client is refused
        httpx.get(f"{proxy.url}/healthz", timeout=10)
    with proxy.client() as c:
        before = proxy.spread("GET")
        first = c.get("/v1/audio/voices/carol/conditionals")
        assert first.status_code == 200, first.text
        etag = first.headers["etag"]
        for _ in range(29):
            r = c.get("/v1/audio/voices/carol/conditionals")
            assert r.status_code == 200 and r.headers["etag"] == etag and r.content == first.content
        served = proxy.spread("GET") - before
        assert set(served) == addresses and sorted(served.values()) == [10, 10, 10], served  # round robin
        for _ in range(6):  # each replica answers a revalidation 304, whichever served the 200
            assert c.get("/v1/audio/voices/carol/conditionals", headers={"If-None-Match": etag}).status_code == 304

        r = upload(c, "dora", seed=11)
        assert r.status_code == 201, r.text
        for replica in cluster.replicas:  # every replica serves it within a second, the same bytes
            with replica.client() as direct:
                until(lambda d=direct: d.get("/v1/audio/voices/dora/conditionals").status_code == 200, timeout=1.0)
        assert len({c.get("/v1/audio/voices/dora/conditionals").content for _ in range(3)}) == 1
        assert c.delete("/v1/audio/voices/dora").status_code == 200
        for replica in cluster.replicas:  # every replica forgets it within one poll of the generation (100 ms)
            with replica.client() as direct:
                _, took = until(lambda d=direct: d.get("/v1/audio/voices/dora").status_code == 404, timeout=1.0)
                assert took < 1.0
        assert {c.get("/v1/audio/voices/dora").status_code for _ in range(3)} == {404}
    print(f"\nrequests per replica through nginx: {dict(proxy.spread())}")


# --- 50 clients for 30 s ----------------------------------------------------------------------------------


@dataclass
class Tally:
    """What the clients saw, shared between their threads."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    statuses: Counter[str] = field(default_factory=Counter)
    server_errors: list[str] = field(default_factory=list)
    stale: list[str] = field(default_factory=list)
    stale_within: list[float] = field(default_factory=list)
    owned: dict[str, str] = field(default_factory=dict)
    """Every voice a client holds at the end: name -> the ETag of its conditionals."""

    def record(self, op: str, r: httpx.Response) -> None:
        with self.lock:
            self.statuses[f"{op} {r.status_code}"] += 1
            if r.status_code >= 500 and r.status_code != 503:
                self.server_errors.append(f"{op}: {r.status_code} {r.text[:200]}")


def client_loop(i: int, proxy: Proxy, stop: float, tally: Tally) -> None:
    """One client: lists, downloads carol and its own voices, revalidates them, uploads voices of its own (mode
    conditionals), renames and deletes them, and revalidates names it renamed or deleted (must be 404)."""
    rnd = random.Random(i)
    mine: dict[str, str] = {}  # name -> ETag of its conditionals
    gone: list[tuple[str, str, float]] = []  # (name, its last ETag, when its rename/delete was acknowledged)
    carol_etag = '"none"'
    n = 0
    with proxy.client() as c:
        while time.monotonic() < stop:
            n += 1
            op = rnd.choices(["list", "carol", "revalidate", "mine", "upload", "rename", "delete", "stale"],
                             weights=[2, 3, 3, 4, 2, 1, 1, 2])[0]
            if op == "list":
                tally.record(op, c.get("/v1/audio/voices", params={"limit": 1000}))
            elif op == "carol":
                r = c.get("/v1/audio/voices/carol/conditionals")
                tally.record(op, r)
                carol_etag = r.headers.get("etag", carol_etag)
            elif op == "revalidate":
                tally.record(op, c.get("/v1/audio/voices/carol/conditionals", headers={"If-None-Match": carol_etag}))
            elif op == "upload":
                name = f"c{i}-{n}"
                r = upload(c, name, seed=i * 100_000 + n)
                tally.record(op, r)
                if r.status_code == 201:
                    mine[name] = ""
                elif r.status_code in (429, 503):
                    time.sleep(min(2.0, float(r.headers.get("retry-after", "1"))))
            elif not mine and op in ("mine", "rename", "delete"):
                continue
            elif op == "mine":
                name = rnd.choice(sorted(mine))
                r = c.get(f"/v1/audio/voices/{name}/conditionals", headers={"If-None-Match": mine[name] or '"x"'})
                tally.record(op, r)
                if r.status_code in (200, 304):
                    mine[name] = r.headers["etag"]
            elif op == "rename":
                name = rnd.choice(sorted(mine))
                new = f"c{i}-{n}-r"
                r = c.patch(f"/v1/audio/voices/{name}", json={"name": new})
                tally.record(op, r)
                if r.status_code == 200:
                    gone.append((name, mine[name], time.monotonic()))
                    mine[new] = mine.pop(name)
            elif op == "delete":
                name = rnd.choice(sorted(mine))
                r = c.delete(f"/v1/audio/voices/{name}")
                tally.record(op, r)
                if r.status_code == 200:
                    gone.append((name, mine.pop(name), time.monotonic()))
            elif op == "stale" and gone:
                name, etag, acknowledged = rnd.choice(gone)
                if not etag:
                    continue
                sent = time.monotonic()
                r = c.get(f"/v1/audio/voices/{name}/conditionals", headers={"If-None-Match": etag})
                tally.record(op, r)
                if r.status_code == 304:
                    with tally.lock:
                        if sent - acknowledged > PROPAGATION_S:
                            tally.stale.append(f"{name}: 304 {sent - acknowledged:.3f} s after its change")
                        else:
                            tally.stale_within.append(sent - acknowledged)
    with tally.lock:
        tally.owned.update(mine)


@pytest.mark.load
def test_fifty_clients_through_the_proxy_for_thirty_seconds(cluster):
    proxy = cluster.proxy
    tally = Tally()
    before = {m: proxy.spread(m) for m in ("POST", "PATCH", "DELETE", "GET")}
    stop = time.monotonic() + LOAD_SECONDS
    t0 = time.monotonic()
    with ThreadPoolExecutor(CLIENTS) as ex:
        list(ex.map(lambda i: client_loop(i, proxy, stop, tally), range(CLIENTS)))
    elapsed = time.monotonic() - t0
    statuses = tally.statuses
    print(f"\n{sum(statuses.values())} requests in {elapsed:.1f} s by {CLIENTS} clients: "
          f"{dict(sorted(statuses.items()))}")
    print(f"304s for a changed voice within {PROPAGATION_S} s of the change: {len(tally.stale_within)}"
          + (f" (the latest {max(tally.stale_within):.3f} s after it)" if tally.stale_within else ""))
    assert not tally.server_errors, tally.server_errors[:5]
    assert {k.split()[1] for k in statuses} <= {"200", "201", "304", "404", "429", "503"}, statuses
    assert not [k for k in statuses if k.startswith("stale ") and not k.endswith((" 404", " 304", " 503"))], statuses
    assert not tally.stale, tally.stale[:5]
    for op in ("upload 201", "rename 200", "delete 200", "mine 304", "stale 404"):
        assert statuses[op] > 0, (op, statuses)
    spread = {m: proxy.spread(m) - before[m] for m in before}
    print(f"requests per replica: {({m: dict(s) for m, s in spread.items()})}")
    for method, per_replica in spread.items():  # uploads, renames, deletes and reads reached every replica
        assert len(per_replica) == 3, (method, per_replica)

    expected = set(tally.owned) | {"alice", "bob", "carol"}
    with proxy.client() as c:
        listed = {v["id"] for v in c.get("/v1/audio/voices", params={"limit": 1000}).json()["data"]}
        assert listed == expected, (sorted(expected - listed), sorted(listed - expected))
        for name, etag in sorted(tally.owned.items()):  # every acknowledged voice is whole, served as it was
            r = c.get(f"/v1/audio/voices/{name}/conditionals")
            assert r.status_code == 200, (name, r.text)
            assert not etag or r.headers["etag"] == etag
    for replica in cluster.replicas:
        with replica.client() as direct:
            assert {v["id"] for v in direct.get("/v1/audio/voices", params={"limit": 1000}).json()["data"]} == expected
    with Library(cluster.location.catalogue, blobs=cluster.location.blobs) as lib:
        report = lib.check()
    assert report.ok, report.to_dict()
    assert report.voices == len(expected)
    print(f"library check: {report.voices} voices, {report.files_checked} files, "
          f"{len(report.unreferenced)} unreferenced objects")
