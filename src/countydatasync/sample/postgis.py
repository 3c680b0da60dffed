"""Load the sample county into a PostGIS table, for tests and benchmarks of the PostgreSQL source.

The table mirrors a county master kept in PostgreSQL: typed attribute columns and a native
`geometry(Geometry, 2927)` column. A typed database cannot hold some of the sample's deliberate damage, so
those values arrive as NULL instead: unparseable geometry bytes, 'unknown' in YearBuilt, 'N/A' in
LandValue and impossible dates. Everything else (null, empty, self-intersecting, degenerate and point
geometry, duplicate and null keys) is loaded as the sample made it. Rows are streamed with COPY in chunks.
"""

from __future__ import annotations

import io
import logging

import numpy as np
import pandas as pd
import psycopg
import shapely
from psycopg import sql

from countydatasync.sample.county import SAMPLE_SRID, SAMPLE_TABLE, SampleCounty, sample_batches

log = logging.getLogger(__name__)

DEFAULT_COUNTY = SampleCounty()

# Source column -> PostgreSQL type; `Shape` is the geometry column.
PG_COLUMNS: dict[str, str] = {
    "PIN": "text",
    "OwnerName": "text",
    "OwnerMailAddress": "text",
    "SitusAddress": "text",
    "SitusCity": "text",
    "SitusZip": "text",
    "LandUseCode": "text",
    "LandUseDesc": "text",
    "Zoning": "text",
    "Neighborhood": "text",
    "TaxDistrict": "text",
    "SchoolDistrict": "text",
    "Subdivision": "text",
    "Acres": "double precision",
    "LandValue": "numeric(14,2)",
    "ImprValue": "numeric(14,2)",
    "TotalValue": "numeric(14,2)",
    "YearBuilt": "integer",
    "BldgSqFt": "integer",
    "LastSaleDate": "date",
    "LastSalePrice": "numeric(14,2)",
    "LegalDesc": "text",
    "ExemptionCode": "text",
    "TaxYear": "integer",
    "LastModified": "timestamp",
}


def _typed(frame: pd.DataFrame) -> pd.DataFrame:
    """Coerce the sample's columns to what the PostgreSQL types accept; unconvertible values become NULL."""
    out = frame.copy()
    for column, pg_type in PG_COLUMNS.items():
        if pg_type in ("integer",):
            out[column] = pd.to_numeric(out[column], errors="coerce").astype("Int64")
        elif pg_type.startswith(("numeric", "double")):
            out[column] = pd.to_numeric(out[column], errors="coerce")
        elif pg_type == "date":
            dates = pd.to_datetime(out[column], errors="coerce", format="%Y-%m-%d")
            out[column] = dates.dt.strftime("%Y-%m-%d")
    shapes = out["Shape"].to_numpy(dtype=object)
    is_geom = np.fromiter((isinstance(v, shapely.Geometry) for v in shapes), bool, len(shapes))
    ewkb = np.full(len(shapes), None, dtype=object)
    if is_geom.any():
        geoms = shapely.set_srid(shapes[is_geom], SAMPLE_SRID)
        ewkb[is_geom] = shapely.to_wkb(geoms, hex=True, include_srid=True)
    out["Shape"] = ewkb
    return out


def load_sample_postgis(
    conninfo: str,
    county: SampleCounty = DEFAULT_COUNTY,
    table: str = SAMPLE_TABLE,
    schema: str = "public",
    chunk: int = 100_000,
) -> int:
    """Create (or replace) `schema.table` with the sample county and return the number of rows loaded.

    `conninfo` is a libpq connection string or `postgresql://` URL (not a SQLAlchemy `+psycopg` URL).
    The key gets a plain (non-unique) index, as masters carry duplicate parcel numbers, and
    LastModified an index for incremental reads. Defaults: the 50,000-parcel county in public.MasterParcels.
    """
    target = sql.Identifier(schema, table)
    columns = [*PG_COLUMNS, "Shape"]
    definition = sql.SQL(", ").join(
        [sql.SQL("{} {}").format(sql.Identifier(c), sql.SQL(t)) for c, t in PG_COLUMNS.items()]
        + [sql.SQL("{} geometry(Geometry, {})").format(sql.Identifier("Shape"), sql.Literal(SAMPLE_SRID))]
    )
    copy = sql.SQL("COPY {} ({}) FROM STDIN (FORMAT csv)").format(
        target, sql.SQL(", ").join(map(sql.Identifier, columns))
    )
    loaded = 0
    with psycopg.connect(conninfo) as con:
        con.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(schema)))
        con.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(target))
        con.execute(sql.SQL("CREATE TABLE {} ({})").format(target, definition))
        for frame in sample_batches(county, chunk):
            buffer = io.StringIO()
            _typed(frame)[columns].to_csv(buffer, header=False, index=False, na_rep="")
            with con.cursor().copy(copy) as sink:
                sink.write(buffer.getvalue())
            loaded += len(frame)
            log.debug("loaded %d sample parcels into %s.%s", loaded, schema, table)
        for column in ("PIN", "LastModified"):
            con.execute(sql.SQL("CREATE INDEX ON {} ({})").format(target, sql.Identifier(column)))
        con.execute(sql.SQL("ANALYZE {}").format(target))
    return loaded
