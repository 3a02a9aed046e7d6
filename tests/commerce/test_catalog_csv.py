"""Catalog CSV through the CLI: import with a report of rejected rows, export that imports back."""

from __future__ import annotations

from pathlib import Path

from fastapi.testclient import TestClient
from typer.testing import CliRunner

from omnicanal.cli import app
from omnicanal.settings import Settings
from tests.commerce.helpers import API, make_category, ok

CSV = """product,name,category,tax_class,sku,currency,price,price_store,attributes,name_es,description_es
tee,T-shirt,clothing,standard,TEE-S,EUR,1999,1799,size=S;color=red,Camiseta,Algodón
tee,T-shirt,clothing,standard,TEE-M,EUR,1999,,size=M;color=red,Camiseta,Algodón
mug,Mug,,standard,MUG-1,EUR,not-a-number,,,,
book,Book,nosuchcategory,zero,BOOK-1,EUR,1500,,,,
cap,Cap,,standard,CAP-1,EUR,900,,,,
"""


def test_import_reports_rejected_rows_and_export_round_trips(
    client: TestClient, settings: Settings, tmp_path: Path, monkeypatch: object
) -> None:
    make_category(client, "clothing", "Clothing")
    source = tmp_path / "catalog.csv"
    source.write_text(CSV)
    env = {"OMNICANAL_DATABASE_URL": settings.database_url, "OMNICANAL_ENVIRONMENT": "test"}
    result = CliRunner().invoke(app, ["catalog", "import", str(source)], env=env)
    assert result.exit_code == 1, result.output
    assert "Imported 2 products (3 rows)" in result.output
    assert "line 4:" in result.output and "line 5:" in result.output and "unknown category" in result.output
    products = ok(client.get(f"{API}/products", params={"channel": "store"}))["items"]
    tee = next(p for p in products if p["name"] == "T-shirt")
    assert tee["names"] == {"es": "Camiseta"} and tee["category"] == "clothing"
    assert tee["variants"][0]["price"] == {"amount": 1799, "currency": "EUR", "channel": "store"}
    assert tee["variants"][1]["attributes"] == {"size": "M", "color": "red"}

    exported = tmp_path / "out.csv"
    result = CliRunner().invoke(app, ["catalog", "export", str(exported)], env=env)
    assert result.exit_code == 0, result.output
    text = exported.read_text()
    assert "TEE-S" in text and "1799" in text
    # importing the export again changes nothing and rejects nothing
    result = CliRunner().invoke(app, ["catalog", "import", str(exported)], env=env)
    assert result.exit_code == 0, result.output
    assert len(ok(client.get(f"{API}/products"))["items"]) == 2
