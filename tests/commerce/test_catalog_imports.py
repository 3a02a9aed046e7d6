"""Catalog CSV import over the API: the same import and report as the CLI, with progress to follow."""

from __future__ import annotations

import time
from typing import Any

from fastapi.testclient import TestClient

from omnicanal.commerce import catalog_import_jobs
from tests.commerce.helpers import API, make_category, ok
from tests.commerce.test_catalog_csv import CSV


def finished(client: TestClient, location: str) -> dict[str, Any]:
    deadline = time.monotonic() + 20
    while True:
        job: dict[str, Any] = ok(client.get(location))
        if job["status"] in ("done", "failed") or time.monotonic() > deadline:
            return job
        time.sleep(0.05)


def test_an_uploaded_csv_is_imported_with_a_report_of_the_rejected_rows(client: TestClient) -> None:
    make_category(client, "clothing", "Clothing")
    started = client.post(f"{API}/catalog/imports", files={"file": ("catalog.csv", CSV.encode(), "text/csv")})
    assert started.status_code == 202, started.text
    assert started.json()["status"] == "queued"
    job = finished(client, started.headers["location"])
    assert job["status"] == "done" and job["filename"] == "catalog.csv"
    assert (job["total"], job["done"], job["progress"]) == (4, 4, 1.0)
    assert (job["products"], job["variants"]) == (2, 3)  # as the CLI: the same rows refused for the same reasons
    assert [r["line"] for r in job["rejected"]] == [4, 5]
    assert "unknown category" in job["rejected"][1]["reason"]
    assert [r["column"] for r in job["rejected"]] == ["price", "category"]
    names = {p["name"] for p in ok(client.get(f"{API}/products"))["items"]}
    assert names == {"T-shirt", "Cap"}


def test_a_big_file_goes_in_slices_and_its_line_numbers_stay_those_of_the_file(
    client: TestClient, monkeypatch: Any
) -> None:
    monkeypatch.setattr(catalog_import_jobs, "SLICE", 2)
    rows = ["product,name,sku,currency,price"]
    for n in range(7):
        rows.append(f"p{n},Product {n},SKU-{n},EUR,{'oops' if n == 5 else 1000 + n}")
    rows.insert(4, ",,SKU-X,EUR,100")  # names no product
    started = client.post(f"{API}/catalog/imports", content="\n".join(rows).encode(),
                          headers={"content-type": "text/csv", "x-filename": "big.csv"})  # fmt: skip
    assert started.status_code == 202, started.text
    job = finished(client, started.headers["location"])
    assert (job["status"], job["total"], job["done"], job["products"]) == ("done", 7, 7, 6)
    assert [(r["line"], r["reason"][:30]) for r in job["rejected"]] == [
        (5, "the row names no product"), (8, job["rejected"][1]["reason"][:30])
    ]  # fmt: skip


def test_bad_uploads_are_refused_or_reported(client: TestClient) -> None:
    empty = client.post(f"{API}/catalog/imports", content=b"", headers={"content-type": "text/csv"})
    assert empty.status_code == 422
    wrong = client.post(f"{API}/catalog/imports", content=b"sku,colour\nA,red\n", headers={"content-type": "text/csv"})
    job = finished(client, wrong.headers["location"])
    assert job["status"] == "done" and job["products"] == 0
    assert job["rejected"] == [{"line": 1, "column": "", "reason": "unknown columns: colour"}]
    missing = client.get(f"{API}/catalog/imports/01930000-0000-7000-8000-000000000000")
    assert missing.status_code == 404
