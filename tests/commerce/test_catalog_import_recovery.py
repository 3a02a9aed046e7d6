"""A catalog import whose server process died is resumed from where it stopped, or failed with its reason."""

from __future__ import annotations

import subprocess
import sys
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import update

from omnicanal.commerce import catalog_import_jobs as jobs
from omnicanal.commerce.catalog_import_jobs import CatalogImport
from omnicanal.db import Database, utcnow
from omnicanal.settings import Settings
from tests.commerce.helpers import API, ok
from tests.commerce.test_catalog_imports import finished

ROOT = Path(__file__).resolve().parents[2]

# a server process that imports two products per slice and dies in the middle of its third slice: the
# products of that slice are written but never committed
DYING_PROCESS = """
import os, sys
from omnicanal.commerce import catalog_import_jobs as jobs
from omnicanal.commerce.catalog_csv import import_csv
from omnicanal.db import create_database
from omnicanal.settings import Settings

db = create_database(Settings(database_url=sys.argv[1], environment="test"))
jobs.SLICE = 2
with db.write() as session:
    job_id = jobs.create_job(session, filename="big.csv", text=sys.stdin.read(), created_by="test").id
print(job_id, flush=True)
slices = 0

def dies_in_the_third_slice(session, source):
    global slices
    slices += 1
    report = import_csv(session, source)
    if slices == 3:
        session.flush()
        os._exit(3)
    return report

jobs.run_import(db, job_id, importer=dies_in_the_third_slice)
"""


def big_file() -> str:
    rows = ["product,name,sku,currency,price"]
    for n in range(7):  # product 1 (second slice) and product 5 (the slice in flight) have a bad price
        rows.append(f"p{n},Product {n},SKU-{n},EUR,{'oops' if n in (1, 5) else 1000 + n}")
    return "\n".join(rows) + "\n"


def import_in_a_process_that_dies(settings: Settings) -> str:
    done = subprocess.run(
        [sys.executable, "-c", DYING_PROCESS, settings.database_url], input=big_file(), capture_output=True,
        text=True, cwd=ROOT, env={"PYTHONPATH": str(ROOT / "src"), "PATH": "/usr/bin:/bin"}, timeout=120,
    )  # fmt: skip
    assert done.returncode == 3, done.stderr
    return done.stdout.strip()


def product_names(client: TestClient) -> set[str]:
    return {p["name"] for p in ok(client.get(f"{API}/products", params={"limit": 100}))["items"]}


def test_an_import_whose_process_died_is_resumed_where_it_stopped(client: TestClient, settings: Settings) -> None:
    job_id = import_in_a_process_that_dies(settings)
    # two slices were committed; the third died with its process
    assert product_names(client) == {"Product 0", "Product 2", "Product 3"}
    job = finished(client, f"{API}/catalog/imports/{job_id}")  # reading it finds the process gone
    assert (job["status"], job["total"], job["done"], job["progress"]) == ("done", 7, 7, 1.0)
    assert (job["attempts"], job["error"]) == (2, None)
    assert job["products"] == 5 and job["variants"] == 5
    # each bad row reported once, with its line in the file and its column
    assert [(r["line"], r["column"]) for r in job["rejected"]] == [(3, "price"), (7, "price")]
    assert product_names(client) == {f"Product {n}" for n in (0, 2, 3, 4, 6)}


def test_an_import_that_keeps_losing_its_process_fails_with_the_reason_and_can_be_resumed(
    client: TestClient, settings: Settings, monkeypatch: Any
) -> None:
    monkeypatch.setattr(jobs, "MAX_ATTEMPTS", 1)
    job_id = import_in_a_process_that_dies(settings)
    listed = ok(client.get(f"{API}/catalog/imports"))["items"]
    job = next(item for item in listed if item["id"] == job_id)
    assert (job["status"], job["failure"], job["done"]) == ("failed", "worker_lost", 4)
    assert "stopped (attempts: 1)" in job["error"] and "resume it" in job["error"]
    assert product_names(client) == {"Product 0", "Product 2", "Product 3"}  # what was committed is kept
    resumed = client.post(f"{API}/catalog/imports/{job_id}/resume")
    assert resumed.status_code == 202, resumed.text
    job = finished(client, f"{API}/catalog/imports/{job_id}")
    assert (job["status"], job["done"], job["products"], job["error"]) == ("done", 7, 5, None)
    assert [r["line"] for r in job["rejected"]] == [3, 7]
    again = client.post(f"{API}/catalog/imports/{job_id}/resume")
    assert again.status_code == 409


def test_an_import_whose_file_was_not_kept_fails_and_says_to_upload_it_again(client: TestClient, db: Database) -> None:
    with db.write() as session:
        job_id = jobs.create_job(session, filename="old.csv", text=big_file(), created_by="test").id
    with db.write() as session:  # as a job queued before files were kept, whose thread is gone
        session.execute(update(CatalogImport).where(CatalogImport.id == job_id).values(source=None))
    jobs._running.discard(job_id)
    job = finished(client, f"{API}/catalog/imports/{job_id}")
    assert (job["status"], job["failure"]) == ("failed", "file_lost")
    assert "upload the file again" in job["error"]
    assert client.post(f"{API}/catalog/imports/{job_id}/resume").status_code == 409


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
def test_a_process_is_gone_when_its_pid_no_longer_runs_or_it_stopped_committing(client: TestClient) -> None:
    now = utcnow()

    def job(worker: str, *, ago: timedelta = timedelta(0), status: str = "running") -> CatalogImport:
        return CatalogImport(id=uuid.uuid4(), status=status, worker=worker, heartbeat_at=now - ago, created_at=now)

    host = jobs.socket.gethostname()
    me = jobs.this_worker()
    assert jobs.worker_gone(job(me))  # this process, but no thread of it runs the job
    assert jobs.worker_gone(job(f"{host}:{jobs.os.getpid()}:another-token"))  # this pid, an earlier process
    assert jobs.worker_gone(job(f"{host}:999999999:t"))  # no such process on this host
    assert not jobs.worker_gone(job(f"{host}:1:t"))  # a process that runs
    assert not jobs.worker_gone(job("elsewhere:42:t", ago=timedelta(seconds=30)))
    assert jobs.worker_gone(job("elsewhere:42:t", ago=jobs.STALE_AFTER + timedelta(seconds=1)))
    assert not jobs.worker_gone(job(f"{host}:999999999:t", status="done"))


@pytest.mark.parametrize("backend", ["postgresql"], indirect=True)
def test_many_readers_noticing_the_dead_process_at_once_resume_the_import_once(
    client: TestClient, settings: Settings, db: Database
) -> None:
    job_id = import_in_a_process_that_dies(settings)
    with ThreadPoolExecutor(max_workers=8) as pool:
        resumed = list(pool.map(lambda _: jobs.recover(db), range(16)))
    assert sum(len(ids) for ids in resumed) == 1
    job = finished(client, f"{API}/catalog/imports/{job_id}")
    assert (job["status"], job["attempts"], job["done"], job["products"]) == ("done", 2, 7, 5)
    assert [r["line"] for r in job["rejected"]] == [3, 7]
