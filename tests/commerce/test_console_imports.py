"""Catalog CSV in the console: upload, a progress bar that advances, the rejected rows, the export."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from playwright.sync_api import Browser, Page, expect

from omnicanal.commerce import catalog_import_jobs as jobs
from omnicanal.commerce.catalog_csv import import_csv
from omnicanal.db import Database
from tests.commerce.helpers import API, make_category, ok
from tests.commerce.test_catalog_csv import CSV
from tests.console.conftest import browser, server  # noqa: F401 - the browser fixtures
from tests.console.helpers import PASSWORD, log_in, make_user
from tests.support.live_server import LiveServer


def wait_until_finished(staff_client: TestClient, url: str) -> str:
    deadline = time.monotonic() + 20
    while True:
        fragment = staff_client.get(url + "/progress").text
        if 'data-status="done"' in fragment or 'data-status="failed"' in fragment or time.monotonic() > deadline:
            return fragment
        time.sleep(0.05)


def test_a_supervisor_imports_a_file_and_reads_the_report(client: TestClient, app: Any, db: Database) -> None:
    make_category(client, "clothing", "Clothing")
    supervisor = log_in(app, db, role="supervisor", language="en")
    page = supervisor.client.get("/console/shop/imports")
    assert page.status_code == 200 and 'data-testid="import-form"' in page.text
    started = supervisor.post("/console/shop/imports", files={"file": ("catalog.csv", CSV.encode(), "text/csv")},
                              follow_redirects=False)  # fmt: skip
    assert started.status_code == 303, started.text
    location = started.headers["location"]
    assert re.fullmatch(r"/console/shop/imports/[0-9a-f-]{36}", location)
    fragment = wait_until_finished(supervisor.client, location)
    assert 'data-status="done"' in fragment and 'value="100.0"' in fragment
    assert "2 products imported (3 rows), 2 rows rejected." in fragment
    assert 'data-line="4"' in fragment and 'data-line="5"' in fragment and "unknown category" in fragment
    assert "<code>price</code>" in fragment and "<code>category</code>" in fragment
    listing = supervisor.client.get("/console/shop/imports")
    assert "catalog.csv" in listing.text and "Finished" in listing.text
    export = supervisor.client.get("/console/shop/export.csv")
    assert export.headers["content-type"].startswith("text/csv")
    assert "attachment" in export.headers["content-disposition"]
    assert "TEE-S" in export.text and "CAP-1" in export.text
    assert export.text == client.get(f"{API}/catalog/export").text  # the same file as the API's


def test_a_bad_upload_is_a_message_not_a_job(app: Any, db: Database) -> None:
    supervisor = log_in(app, db, role="supervisor", language="es")
    empty = supervisor.post("/console/shop/imports", files={"file": ("vacio.csv", b"", "text/csv")},
                            follow_redirects=True)  # fmt: skip
    assert "the file is empty" in empty.text and 'data-testid="import-row"' not in empty.text


def test_who_may_import_and_who_may_only_look(app: Any, db: Database) -> None:
    clerk = log_in(app, db, role="store_clerk", language="en")
    page = clerk.client.get("/console/shop/imports")
    assert page.status_code == 200 and 'data-testid="import-form"' not in page.text  # reads, cannot import
    assert clerk.client.get("/console/shop/export.csv").status_code == 200
    refused = clerk.post("/console/shop/imports", files={"file": ("c.csv", CSV.encode(), "text/csv")})
    assert refused.status_code == 403
    assert clerk.post("/console/shop/imports/01930000-0000-7000-8000-000000000000/resume").status_code == 403
    assert clerk.client.get("/console/shop/imports/01930000-0000-7000-8000-000000000000").status_code == 404
    assert clerk.client.get("/console/shop/imports/nope").status_code == 404
    anonymous = TestClient(app).get("/console/shop/imports", follow_redirects=False)
    assert anonymous.status_code == 303 and "/console/login" in anonymous.headers["location"]


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:  # noqa: F811
    context = browser.new_context(viewport={"width": 1200, "height": 900}, accept_downloads=True)
    context.set_default_timeout(15_000)
    page = context.new_page()
    problems: list[str] = []
    page.on("pageerror", lambda error: problems.append(str(error)))
    page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
    yield page
    context.close()
    assert problems == []


@pytest.mark.browser
@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
def test_import_in_the_browser(
    page: Page,
    server: LiveServer,  # noqa: F811
    client: TestClient,
    db: Database,
    tmp_path: Path,
    monkeypatch: Any,
) -> None:
    make_category(client, "clothing", "Clothing")
    # one product per slice, each a little slow, so the bar has time to be seen moving
    monkeypatch.setattr(jobs, "SLICE", 1)

    def slow_import(session: Any, source: Any) -> Any:
        time.sleep(0.4)
        return import_csv(session, source)

    monkeypatch.setattr(jobs, "import_csv", slow_import)
    upload = tmp_path / "catalogo.csv"
    upload.write_text(CSV)
    email = make_user(db, role="supervisor", language="es")
    page.goto(server.url("/console/shop"))
    page.get_by_label("Email").fill(email)
    page.get_by_label("Contraseña").fill(PASSWORD)
    page.get_by_role("button", name="Entrar").click()
    page.get_by_test_id("catalog-csv-link").click()
    expect(page).to_have_url(re.compile(r"/console/shop/imports$"))
    page.get_by_test_id("import-file").set_input_files(str(upload))
    page.get_by_test_id("import-start").click()
    expect(page).to_have_url(re.compile(r"/console/shop/imports/[0-9a-f-]{36}$"))
    bar = page.get_by_test_id("import-bar")
    # the bar advances on the page, without a reload: seen part-way, then full
    # (expect polls without eval, which the console's CSP refuses): a value above 0 and below 100
    # status and bar of one snapshot (the page may finish between two checks)
    importing = page.get_by_test_id("import-progress").filter(
        has=page.get_by_test_id("import-status").filter(has_text="Importando")
    )
    expect(importing.get_by_test_id("import-bar")).to_have_attribute(
        "value", re.compile(r"^(?:0\.\d*[1-9]\d*|[1-9]\d?(?:\.\d+)?)$")
    )
    expect(bar).to_have_attribute("value", "100.0")
    expect(page.get_by_test_id("import-status")).to_have_text("Terminada")
    expect(page.get_by_test_id("import-summary")).to_contain_text("2 productos importados")
    rows = page.get_by_test_id("rejected-row")
    expect(rows).to_have_count(2)
    expect(rows.nth(0)).to_contain_text("4")
    expect(rows.nth(0)).to_contain_text("price")
    expect(rows.nth(1)).to_contain_text("unknown category")
    with page.expect_download() as download_info:
        page.get_by_test_id("export-link").click()
    exported = Path(download_info.value.path()).read_text()
    assert exported.splitlines()[0].startswith("product,name,category") and "TEE-S" in exported
    assert len(ok(client.get(f"{API}/products"))["items"]) == 2
