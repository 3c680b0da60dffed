"""The geo DB: a GeoPackage 1.4 written with plain SQLite, inside the run's transaction.

GDAL's writer cannot update or delete single features, and it cannot join a transaction that spans the
other staging databases, so the tables are created here as the GeoPackage standard defines them (the
same layout GDAL writes) and GDAL's own validator checks the result in the tests.

The standard R-tree triggers call ST_* SQL functions that only GeoPackage-aware readers (GDAL, QGIS,
ArcGIS) register. A run therefore drops the triggers of its layer, keeps the R-tree itself from the
bounds it already has, and re-creates the triggers before it commits: readers never see the difference.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from pyproj import CRS
from pyproj.exceptions import CRSError

from countydatasync.settings import ColumnSpec

GPKG_APPLICATION_ID = 0x47504B47  # "GPKG"
GPKG_USER_VERSION = 10400  # GeoPackage 1.4
HEADER = np.dtype([("magic", "S2"), ("version", "u1"), ("flags", "u1"), ("srs_id", "<i4"), ("envelope", "<f8", 4)])
# flags: bit 0 little-endian, bits 1-3 envelope [minx, maxx, miny, maxy]; never empty (empties are rejected).
HEADER_FLAGS = 0b0000_0011

SQL_TYPES = {
    "text": "TEXT",
    "integer": "INTEGER",
    "real": "REAL",
    "date": "DATE",
    "datetime": "DATETIME",
    "boolean": "BOOLEAN",
}

CORE_DDL = [
    "CREATE TABLE IF NOT EXISTS {s}.gpkg_spatial_ref_sys (srs_name TEXT NOT NULL, srs_id INTEGER NOT NULL "
    "PRIMARY KEY, organization TEXT NOT NULL, organization_coordsys_id INTEGER NOT NULL, definition TEXT NOT "
    "NULL, description TEXT)",
    "CREATE TABLE IF NOT EXISTS {s}.gpkg_contents (table_name TEXT NOT NULL PRIMARY KEY, data_type TEXT NOT "
    "NULL, identifier TEXT UNIQUE, description TEXT DEFAULT '', last_change DATETIME NOT NULL DEFAULT "
    "(strftime('%Y-%m-%dT%H:%M:%fZ','now')), min_x DOUBLE, min_y DOUBLE, max_x DOUBLE, max_y DOUBLE, srs_id "
    "INTEGER, CONSTRAINT fk_gc_r_srs_id FOREIGN KEY (srs_id) REFERENCES gpkg_spatial_ref_sys(srs_id))",
    "CREATE TABLE IF NOT EXISTS {s}.gpkg_geometry_columns (table_name TEXT NOT NULL, column_name TEXT NOT "
    "NULL, geometry_type_name TEXT NOT NULL, srs_id INTEGER NOT NULL, z TINYINT NOT NULL, m TINYINT NOT NULL, "
    "CONSTRAINT pk_geom_cols PRIMARY KEY (table_name, column_name), CONSTRAINT uk_gc_table_name UNIQUE "
    "(table_name), CONSTRAINT fk_gc_tn FOREIGN KEY (table_name) REFERENCES gpkg_contents(table_name), "
    "CONSTRAINT fk_gc_srs FOREIGN KEY (srs_id) REFERENCES gpkg_spatial_ref_sys (srs_id))",
    "CREATE TABLE IF NOT EXISTS {s}.gpkg_extensions (table_name TEXT, column_name TEXT, extension_name TEXT "
    "NOT NULL, definition TEXT NOT NULL, scope TEXT NOT NULL, CONSTRAINT ge_tce UNIQUE (table_name, "
    "column_name, extension_name))",
    # GDAL's feature-count cache: readers trust it, so every run sets it.
    "CREATE TABLE IF NOT EXISTS {s}.gpkg_ogr_contents (table_name TEXT NOT NULL PRIMARY KEY, feature_count "
    "INTEGER DEFAULT NULL)",
]

# The three definitions every GeoPackage must have (GeoPackage 1.4, requirement 11).
WGS84_WKT = (
    'GEOGCS["WGS 84",DATUM["WGS_1984",SPHEROID["WGS 84",6378137,298.257223563,AUTHORITY["EPSG","7030"]],'
    'AUTHORITY["EPSG","6326"]],PRIMEM["Greenwich",0,AUTHORITY["EPSG","8901"]],UNIT["degree",0.0174532925199433,'
    'AUTHORITY["EPSG","9122"]],AXIS["Latitude",NORTH],AXIS["Longitude",EAST],AUTHORITY["EPSG","4326"]]'
)
REQUIRED_SRS = [
    ("WGS 84 geodetic", 4326, "EPSG", 4326, WGS84_WKT, "longitude/latitude coordinates in decimal degrees"),
    ("Undefined cartesian SRS", -1, "NONE", -1, "undefined", "undefined cartesian coordinate reference system"),
    ("Undefined geographic SRS", 0, "NONE", 0, "undefined", "undefined geographic coordinate reference system"),
]
# gpkg_extensions row of the WKT2 column (GeoPackage 1.4, Annex F.10), for CRSs that have no WKT1.
CRS_WKT_EXTENSION = (
    "gpkg_spatial_ref_sys",
    "definition_12_063",
    "gpkg_crs_wkt",
    "http://www.geopackage.org/spec120/#extension_crs_wkt",
    "read-write",
)


def q(name: str) -> str:
    """Quote an SQL identifier."""
    return '"' + name.replace('"', '""') + '"'


def rtree_name(layer: str) -> str:
    return f"rtree_{layer}_geom"


def _trigger_sql(layer: str) -> dict[str, str]:
    """The R-tree triggers of GeoPackage 1.4 (Annex F.3), by name."""
    t, r, g, i = q(layer), q(rtree_name(layer)), '"geom"', '"fid"'
    box = f"ST_MinX(NEW.{g}), ST_MaxX(NEW.{g}), ST_MinY(NEW.{g}), ST_MaxY(NEW.{g})"
    new_ok = f"(NEW.{g} NOTNULL AND NOT ST_IsEmpty(NEW.{g}))"
    new_none = f"(NEW.{g} ISNULL OR ST_IsEmpty(NEW.{g}))"
    old_ok = f"(OLD.{g} NOTNULL AND NOT ST_IsEmpty(OLD.{g}))"
    old_none = f"(OLD.{g} ISNULL OR ST_IsEmpty(OLD.{g}))"
    base = rtree_name(layer)
    return {
        f"{base}_insert": f"AFTER INSERT ON {t} WHEN {new_ok} BEGIN INSERT OR REPLACE INTO {r} VALUES "
        f"(NEW.{i}, {box}); END",
        f"{base}_update2": f"AFTER UPDATE OF {g} ON {t} WHEN OLD.{i} = NEW.{i} AND {new_none} BEGIN "
        f"DELETE FROM {r} WHERE id = OLD.{i}; END",
        f"{base}_update4": f"AFTER UPDATE ON {t} WHEN OLD.{i} != NEW.{i} AND {new_none} BEGIN "
        f"DELETE FROM {r} WHERE id IN (OLD.{i}, NEW.{i}); END",
        f"{base}_update5": f"AFTER UPDATE ON {t} WHEN OLD.{i} != NEW.{i} AND {new_ok} BEGIN "
        f"DELETE FROM {r} WHERE id = OLD.{i}; INSERT OR REPLACE INTO {r} VALUES (NEW.{i}, {box}); END",
        f"{base}_update6": f"AFTER UPDATE OF {g} ON {t} WHEN OLD.{i} = NEW.{i} AND {new_ok} AND {old_ok} BEGIN "
        f"UPDATE {r} SET minx = ST_MinX(NEW.{g}), maxx = ST_MaxX(NEW.{g}), miny = ST_MinY(NEW.{g}), "
        f"maxy = ST_MaxY(NEW.{g}) WHERE id = NEW.{i}; END",
        f"{base}_update7": f"AFTER UPDATE OF {g} ON {t} WHEN OLD.{i} = NEW.{i} AND {new_ok} AND {old_none} BEGIN "
        f"INSERT INTO {r} VALUES (NEW.{i}, {box}); END",
        f"{base}_delete": f"AFTER DELETE ON {t} WHEN OLD.{g} NOT NULL BEGIN DELETE FROM {r} WHERE id = OLD.{i}; END",
    }


def _count_trigger_sql(layer: str) -> dict[str, str]:
    """GDAL's feature-count triggers, so edits by other tools keep gpkg_ogr_contents right."""
    t, lit = q(layer), "'" + layer.replace("'", "''") + "'"
    return {
        f"trigger_insert_feature_count_{layer}": f"AFTER INSERT ON {t} BEGIN UPDATE gpkg_ogr_contents SET "
        f"feature_count = feature_count + 1 WHERE lower(table_name) = lower({lit}); END",
        f"trigger_delete_feature_count_{layer}": f"AFTER DELETE ON {t} BEGIN UPDATE gpkg_ogr_contents SET "
        f"feature_count = feature_count - 1 WHERE lower(table_name) = lower({lit}); END",
    }


def _wkt1(crs: CRS) -> str | None:
    """The WKT1 that GDAL writes, axes always stated: PROJ leaves them out of geographic CRSs and of projected
    ones with northing first, and WKT1 without AXIS means longitude/latitude or easting/northing."""
    try:
        return crs.to_wkt("WKT1_GDAL", output_axis_rule=True)
    except CRSError:
        return None


def _has_wkt2_column(con: sqlite3.Connection, schema: str) -> bool:
    columns = con.execute(f"PRAGMA {schema}.table_info(gpkg_spatial_ref_sys)").fetchall()
    return any(column[1] == "definition_12_063" for column in columns)


def _add_crs_wkt_extension(con: sqlite3.Connection, schema: str) -> None:
    """Add the gpkg_crs_wkt extension's definition_12_063 column, filled for the rows already there.

    A NOT NULL column added to a table with rows needs a default; the standard allows '' (an older version
    of the extension had it)."""
    con.execute(f"ALTER TABLE {schema}.gpkg_spatial_ref_sys ADD COLUMN definition_12_063 TEXT NOT NULL DEFAULT ''")
    rows = con.execute(f"SELECT srs_id, organization, organization_coordsys_id FROM {schema}.gpkg_spatial_ref_sys")
    wkt2 = [
        (CRS.from_epsg(code).to_wkt("WKT2_2015") if organization.upper() == "EPSG" else "undefined", srs_id)
        for srs_id, organization, code in rows.fetchall()
    ]
    con.executemany(f"UPDATE {schema}.gpkg_spatial_ref_sys SET definition_12_063 = ? WHERE srs_id = ?", wkt2)
    con.execute(f"INSERT INTO {schema}.gpkg_extensions VALUES (?, ?, ?, ?, ?)", CRS_WKT_EXTENSION)


def _register_crs(con: sqlite3.Connection, schema: str, srid: int) -> None:
    """Add EPSG:`srid` to gpkg_spatial_ref_sys (if missing) as WKT1, the form every reader knows. Some CRSs
    have no WKT1 form (EPSG:6201, NAD27 / Michigan Central, among others): those are written as GDAL writes
    them, with definition 'undefined' and the WKT2 in the gpkg_crs_wkt extension's definition_12_063 column."""
    if con.execute(f"SELECT 1 FROM {schema}.gpkg_spatial_ref_sys WHERE srs_id = ?", (srid,)).fetchone():
        return
    crs = CRS.from_epsg(srid)
    wkt1 = _wkt1(crs)
    has_wkt2 = _has_wkt2_column(con, schema)
    if wkt1 is None and not has_wkt2:
        _add_crs_wkt_extension(con, schema)
        has_wkt2 = True
    row = {
        "srs_name": crs.name,
        "srs_id": srid,
        "organization": "EPSG",
        "organization_coordsys_id": srid,
        "definition": wkt1 or "undefined",
        "description": f"EPSG:{srid}",
    }
    if has_wkt2:
        row["definition_12_063"] = crs.to_wkt("WKT2_2015")
    con.execute(
        f"INSERT INTO {schema}.gpkg_spatial_ref_sys ({', '.join(row)}) VALUES ({', '.join('?' * len(row))})",
        list(row.values()),
    )


def layer_columns(key_name: str, columns: Sequence[ColumnSpec]) -> list[tuple[str, str]]:
    """(name, SQL type) of the layer's attribute columns, in table order after fid and geom."""
    return [
        (key_name, "TEXT"),
        *((c.name, SQL_TYPES[c.type]) for c in columns),
        ("gis_acres", "REAL"),
        ("sync_status", "TEXT"),
        ("sync_note", "TEXT"),
    ]


def create_layer(
    con: sqlite3.Connection, schema: str, layer: str, key_name: str, columns: Sequence[ColumnSpec], srid: int
) -> None:
    """Create the GeoPackage core tables (if missing) and the parcels layer with its R-tree."""
    s = schema
    con.execute(f"PRAGMA {s}.application_id = {GPKG_APPLICATION_ID}")
    con.execute(f"PRAGMA {s}.user_version = {GPKG_USER_VERSION}")
    for ddl in CORE_DDL:
        con.execute(ddl.format(s=s))
    con.executemany(
        f"INSERT OR IGNORE INTO {s}.gpkg_spatial_ref_sys (srs_name, srs_id, organization, organization_coordsys_id, "
        "definition, description) VALUES (?, ?, ?, ?, ?, ?)",
        REQUIRED_SRS,
    )
    _register_crs(con, s, srid)
    attrs = ", ".join(
        f"{q(name)} {typ}{' NOT NULL UNIQUE' if name == key_name else ''}"
        for name, typ in layer_columns(key_name, columns)
    )
    con.execute(
        f'CREATE TABLE {s}.{q(layer)} ("fid" INTEGER PRIMARY KEY AUTOINCREMENT NOT NULL, "geom" MULTIPOLYGON, {attrs})'
    )
    con.execute(f"CREATE VIRTUAL TABLE {s}.{q(rtree_name(layer))} USING rtree(id, minx, maxx, miny, maxy)")
    con.execute(
        f"INSERT INTO {s}.gpkg_contents (table_name, data_type, identifier, description, srs_id) "
        "VALUES (?, 'features', ?, 'Parcels published by CountyDataSync', ?)",
        (layer, layer, srid),
    )
    con.execute(f"INSERT INTO {s}.gpkg_geometry_columns VALUES (?, 'geom', 'MULTIPOLYGON', ?, 0, 0)", (layer, srid))
    con.execute(
        f"INSERT INTO {s}.gpkg_extensions VALUES (?, 'geom', 'gpkg_rtree_index', "
        "'http://www.geopackage.org/spec120/#extension_rtree', 'write-only')",
        (layer,),
    )
    con.execute(f"INSERT INTO {s}.gpkg_ogr_contents VALUES (?, 0)", (layer,))
    create_triggers(con, schema, layer)


def drop_layer(con: sqlite3.Connection, schema: str, layer: str) -> None:
    """Remove the layer, its R-tree and its registrations (a schema change rebuilds the layer)."""
    con.execute(f"DROP TABLE IF EXISTS {schema}.{q(rtree_name(layer))}")
    con.execute(f"DROP TABLE IF EXISTS {schema}.{q(layer)}")
    # SQLite dropped the table whatever the case of its name; the registrations must go alike, or a layer
    # renamed from parcels to Parcels would be registered twice.
    for table in ("gpkg_extensions", "gpkg_geometry_columns", "gpkg_ogr_contents", "gpkg_contents"):
        con.execute(f"DELETE FROM {schema}.{table} WHERE lower(table_name) = lower(?)", (layer,))


def drop_triggers(con: sqlite3.Connection, schema: str, layer: str) -> None:
    for name in (*_trigger_sql(layer), *_count_trigger_sql(layer)):
        con.execute(f"DROP TRIGGER IF EXISTS {schema}.{q(name)}")


def create_triggers(con: sqlite3.Connection, schema: str, layer: str) -> None:
    for name, body in {**_trigger_sql(layer), **_count_trigger_sql(layer)}.items():
        con.execute(f"CREATE TRIGGER IF NOT EXISTS {schema}.{q(name)} {body}")


def geometry_blobs(wkb: np.ndarray, bounds: np.ndarray, srid: int) -> pa.Array:
    """GeoPackage geometry blobs: the standard header (with the envelope) followed by the WKB. Joined in
    Arrow: ten times as fast as joining Python bytes."""
    header = np.zeros(len(wkb), dtype=HEADER)
    header["magic"] = b"GP"
    header["flags"] = HEADER_FLAGS
    header["srs_id"] = srid
    header["envelope"] = bounds[:, [0, 2, 1, 3]]  # shapely (minx, miny, maxx, maxy) -> GPKG (minx, maxx, miny, maxy)
    headers = pa.FixedSizeBinaryArray.from_buffers(
        pa.binary(HEADER.itemsize), len(wkb), [None, pa.py_buffer(header.tobytes())]
    )
    return pc.binary_join_element_wise(headers.cast(pa.binary()), pa.array(wkb, pa.binary()), b"")


def refresh_contents(
    con: sqlite3.Connection, schema: str, layer: str, extent: tuple[float, float, float, float] | None
) -> None:
    """Set the layer's extent (minx, miny, maxx, maxy; None when empty), its last_change in gpkg_contents and
    its count in gpkg_ogr_contents."""
    con.execute(
        f"UPDATE {schema}.gpkg_contents SET min_x = ?, min_y = ?, max_x = ?, max_y = ?, "
        "last_change = strftime('%Y-%m-%dT%H:%M:%fZ','now') WHERE table_name = ?",
        (*(extent or (None,) * 4), layer),
    )
    con.execute(
        f"UPDATE {schema}.gpkg_ogr_contents SET feature_count = (SELECT count(*) FROM {schema}.{q(layer)}) "
        "WHERE table_name = ?",
        (layer,),
    )
