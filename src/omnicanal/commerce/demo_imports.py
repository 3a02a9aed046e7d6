"""Demo: a catalog CSV imported as from the console, with two rows the import refuses and says why."""

from __future__ import annotations

from omnicanal.commerce import catalog_import_jobs as jobs
from omnicanal.db import Database

CSV = """product,name,category,tax_class,sku,currency,price,price_store,attributes,name_es,description_es
gorra,Gorra running,accesorios,standard,CAP-RUN-S,EUR,1499,,talla=S,Gorra running,Transpirable
gorra,Gorra running,accesorios,standard,CAP-RUN-L,EUR,1499,,talla=L,Gorra running,Transpirable
mochila,Mochila trail 12 l,accesorios,standard,BAG-12,EUR,4999,4499,color=negro,Mochila trail 12 l,Con bolsa de agua
cinta,Cinta de pelo,accesorios,standard,BAND-1,EUR,doce,,,Cinta de pelo,
gafas,Gafas de sol,gafas,standard,SUN-1,EUR,2999,,,Gafas de sol,
"""


def load_demo_catalog_import(db: Database) -> str:
    with db.write() as session:
        job_id = jobs.create_job(session, filename="novedades.csv", text=CSV, created_by="demo").id
    jobs.run_import(db, job_id)  # here rather than in a thread: the demo waits for it
    with db.read() as session:
        job = jobs.import_out(session.get(jobs.CatalogImport, job_id))  # type: ignore[arg-type]
    refused = "; ".join(f"line {r.line} ({r.column}): {r.reason}" for r in job.rejected)
    return (
        f"Catalog import: novedades.csv brought {job.products} products ({job.variants} rows) and refused "
        f"{len(job.rejected)} rows ({refused}): /console/shop/imports/{job_id}; the whole catalog as CSV at "
        "/console/shop/export.csv."
    )
