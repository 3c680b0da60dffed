"""A deterministic sample county: a MasterParcels table like an assessor's, in a SQLite file.

Parcels lie on a street grid in Washington State Plane South (EPSG:2927, US survey feet). Most are
slightly irregular quadrilaterals; some have a detached second part (multipolygons) or a hole. A small,
fixed share of records is broken the ways real masters are, so a sync shows how errors are handled:
null, empty, unparseable, self-intersecting, degenerate and non-polygonal geometry, duplicate and null
keys, and text in numeric or date columns. The same seed and size always give the same table.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import shapely

SAMPLE_SRID = 2927
SAMPLE_TABLE = "MasterParcels"
DEFAULT_PARCELS = 50_000
DEFAULT_SEED = 2927

# Grid cells in feet: lot plus half a street on each side.
CELL_W, CELL_H = 160.0, 240.0
ORIGIN_X, ORIGIN_Y = 1_020_000.0, 600_000.0
SQFT_PER_ACRE = 43_560.0

# Share of records broken on purpose, by kind (the rest are good; a few good ones are multipart or holed).
BAD_RATES = {
    "null_geometry": 0.0010,
    "empty_geometry": 0.0005,
    "unparseable_geometry": 0.0005,
    "self_intersecting": 0.0020,  # a bowtie: make_valid repairs it into two triangles
    "degenerate": 0.0005,  # collinear ring: nothing polygonal survives repair
    "non_polygonal": 0.0005,
    "duplicate_key": 0.0005,
    "null_key": 0.0002,
    "bad_attribute": 0.0010,
}
MULTIPART_RATE = 0.03
HOLE_RATE = 0.02

LAND_USES = [
    ("11", "Single Family Residence", 0.55, "R-4"),
    ("12", "Two-Family Residence", 0.06, "R-6"),
    ("13", "Multi-Family Residence", 0.05, "R-12"),
    ("18", "Mobile Home", 0.04, "RR"),
    ("41", "Commercial Office", 0.04, "C-2"),
    ("53", "Retail Trade", 0.04, "C-3"),
    ("61", "Industrial", 0.03, "I-1"),
    ("81", "Agriculture", 0.05, "AG"),
    ("91", "Vacant Land", 0.10, "R-4"),
    ("94", "Open Space", 0.04, "OS"),
]
FIRST = [
    "James",
    "Mary",
    "Robert",
    "Patricia",
    "John",
    "Jennifer",
    "Michael",
    "Linda",
    "David",
    "Elizabeth",
    "William",
    "Barbara",
    "Richard",
    "Susan",
    "Joseph",
    "Jessica",
    "Thomas",
    "Karen",
    "Maria",
    "Wei",
]
LAST = [
    "Smith",
    "Johnson",
    "Williams",
    "Brown",
    "Jones",
    "Garcia",
    "Miller",
    "Davis",
    "Rodriguez",
    "Martinez",
    "Nguyen",
    "Anderson",
    "Taylor",
    "Thomas",
    "Moore",
    "Jackson",
    "Lee",
    "Olsen",
    "O'Brien",
    "Kowalski",
]
STREETS = [
    "Capitol",
    "Harrison",
    "Division",
    "Martin",
    "Pacific",
    "Cooper Point",
    "Boston Harbor",
    "Yelm",
    "Rainier",
    "Lacey",
    "Evergreen Park",
    "College",
    "Sleater Kinney",
    "Black Lake",
    "Delphi",
    "Mud Bay",
]
SUFFIXES = ["St", "Ave", "Blvd", "Way", "Rd", "Dr", "Ln", "Ct"]
CITIES = [
    ("Olympia", "98501"),
    ("Lacey", "98503"),
    ("Tumwater", "98512"),
    ("Yelm", "98597"),
    ("Tenino", "98589"),
    ("Rainier", "98576"),
]
SUBDIVISIONS = [
    "Cedar Glen",
    "Evergreen Heights",
    "Mill Creek",
    "Salmon Run",
    "Fir Ridge",
    "Budd Inlet View",
    "Prairie Oaks",
    "Madrona Park",
]

COLUMNS = [
    ("PIN", "TEXT"),
    ("OwnerName", "TEXT"),
    ("OwnerMailAddress", "TEXT"),
    ("SitusAddress", "TEXT"),
    ("SitusCity", "TEXT"),
    ("SitusZip", "TEXT"),
    ("LandUseCode", "TEXT"),
    ("LandUseDesc", "TEXT"),
    ("Zoning", "TEXT"),
    ("Neighborhood", "TEXT"),
    ("TaxDistrict", "TEXT"),
    ("SchoolDistrict", "TEXT"),
    ("Subdivision", "TEXT"),
    ("Acres", "REAL"),
    ("LandValue", "NUMERIC"),
    ("ImprValue", "NUMERIC"),
    ("TotalValue", "NUMERIC"),
    ("YearBuilt", "INTEGER"),
    ("BldgSqFt", "INTEGER"),
    ("LastSaleDate", "TEXT"),
    ("LastSalePrice", "NUMERIC"),
    ("LegalDesc", "TEXT"),
    ("ExemptionCode", "TEXT"),
    ("TaxYear", "INTEGER"),
    ("LastModified", "TEXT"),
    ("Shape", "BLOB"),
]


@dataclass(frozen=True)
class SampleCounty:
    """Size and seed of a sample county; equal values give identical tables."""

    parcels: int = DEFAULT_PARCELS
    seed: int = DEFAULT_SEED

    @property
    def columns_per_row(self) -> int:
        return int(np.ceil(np.sqrt(self.parcels * CELL_H / CELL_W)))


def _pick(rng: np.random.Generator, options: list[str], n: int) -> np.ndarray:
    return np.asarray(options, dtype=object)[rng.integers(0, len(options), n)]


def _lots(rng: np.random.Generator, ids: np.ndarray, per_row: int) -> np.ndarray:
    """Slightly irregular lot quadrilaterals, a few multipart or with a hole."""
    n = len(ids)
    x0 = ORIGIN_X + (ids % per_row) * CELL_W + 10.0
    y0 = ORIGIN_Y + (ids // per_row) * CELL_H + 10.0
    w = rng.uniform(0.55, 0.72, n) * CELL_W
    h = rng.uniform(0.60, 0.80, n) * CELL_H
    jitter = rng.uniform(-3.0, 3.0, (n, 4, 2))
    corners = (
        np.stack(
            [
                np.stack([x0, y0], 1),
                np.stack([x0 + w, y0], 1),
                np.stack([x0 + w, y0 + h], 1),
                np.stack([x0, y0 + h], 1),
            ],
            axis=1,
        )
        + jitter
    )
    rings = np.concatenate([corners, corners[:, :1]], axis=1)
    lots = shapely.polygons(rings)

    holed = rng.random(n) < HOLE_RATE
    if holed.any():
        cx, cy = x0[holed] + w[holed] / 2, y0[holed] + h[holed] / 2
        lots[holed] = shapely.difference(lots[holed], shapely.box(cx - 12, cy - 12, cx + 12, cy + 12))

    multi = rng.random(n) < MULTIPART_RATE
    if multi.any():
        # A detached strip (a garage lot or an easement remnant) between the lot and the next street.
        ex0 = x0[multi] + w[multi] + 8.0
        extra = shapely.box(ex0, y0[multi], ex0 + 25.0, y0[multi] + 40.0)
        parts = np.stack([lots[multi], extra], axis=1).ravel()
        lots[multi] = shapely.multipolygons(parts, indices=np.repeat(np.arange(int(multi.sum())), 2))
    return lots


def _attributes(rng: np.random.Generator, ids: np.ndarray, per_row: int, acres: np.ndarray) -> pd.DataFrame:
    n = len(ids)
    weights = np.array([u[2] for u in LAND_USES])
    use = rng.choice(len(LAND_USES), n, p=weights / weights.sum())
    codes = np.array([u[0] for u in LAND_USES], dtype=object)[use]
    descs = np.array([u[1] for u in LAND_USES], dtype=object)[use]
    zoning = np.array([u[3] for u in LAND_USES], dtype=object)[use]
    col, row = ids % per_row, ids // per_row
    # Districts follow the map: neighbourhoods are 25x25-cell tiles, tax and school districts larger tiles.
    neighborhood = np.char.add("N", ((row // 25) * 40 + col // 25 + 100).astype(str)).astype(object)
    tax_district = np.char.add("TD", ((row // 120) * 10 + col // 120 + 1).astype(str)).astype(object)
    school = np.char.add("SD", ((row // 200) * 5 + col // 200 + 1).astype(str)).astype(object)
    vacant = np.isin(codes, ["91", "94"])

    owner = np.char.add(np.char.add(_pick(rng, LAST, n).astype(str), ", "), _pick(rng, FIRST, n).astype(str))
    owner = owner.astype(object)
    company = rng.random(n) < 0.08
    owner[company] = np.char.add(_pick(rng, LAST, int(company.sum())).astype(str), " HOLDINGS LLC")
    house = rng.integers(100, 9999, n).astype(str)
    street = np.char.add(np.char.add(_pick(rng, STREETS, n).astype(str), " "), _pick(rng, SUFFIXES, n).astype(str))
    situs = np.char.add(np.char.add(house, " "), street).astype(object)
    city_idx = ((row // 150) + col // 150) % len(CITIES)
    city = np.array([c[0] for c in CITIES], dtype=object)[city_idx]
    zips = np.array([c[1] for c in CITIES], dtype=object)[city_idx]
    mailing = situs.copy()
    absentee = rng.random(n) < 0.2
    mailing[absentee] = np.char.add(rng.integers(1, 999, int(absentee.sum())).astype(str), " PO BOX")

    land_rate = rng.uniform(60_000, 240_000, n)
    land_value = np.round(acres * land_rate, 2)
    impr_value = np.where(vacant, 0.0, np.round(rng.uniform(80_000, 650_000, n), 2))
    year_built = np.where(vacant, np.nan, rng.integers(1890, 2026, n)).astype(object)
    year_built[vacant] = None
    sqft = np.where(vacant, 0, rng.integers(600, 4200, n))
    sold = rng.random(n) < 0.7
    sale_day = np.datetime64("1985-01-01") + rng.integers(0, 41 * 365, n).astype("timedelta64[D]")
    sale_date = np.where(sold, sale_day.astype(str).astype(object), None)
    sale_price = np.where(sold, np.round((land_value + impr_value) * rng.uniform(0.6, 1.3, n), -2), None)
    modified = np.datetime64("2023-01-01T00:00:00") + rng.integers(0, 3 * 365 * 86400, n).astype("timedelta64[s]")
    lot, block = ids % 40 + 1, ids // 40 % 90 + 1
    subdivision = _pick(rng, SUBDIVISIONS, n)
    legal = [f"LOT {a} BLK {b} {s}" for a, b, s in zip(lot, block, subdivision, strict=True)]
    exemption = np.where(rng.random(n) < 0.05, "SR", None)

    return pd.DataFrame(
        {
            "OwnerName": owner,
            "OwnerMailAddress": mailing,
            "SitusAddress": situs,
            "SitusCity": city,
            "SitusZip": zips,
            "LandUseCode": codes,
            "LandUseDesc": descs,
            "Zoning": zoning,
            "Neighborhood": neighborhood,
            "TaxDistrict": tax_district,
            "SchoolDistrict": school,
            "Subdivision": subdivision,
            "Acres": np.round(acres, 4),
            "LandValue": land_value,
            "ImprValue": impr_value,
            "TotalValue": np.round(land_value + impr_value, 2),
            "YearBuilt": year_built,
            "BldgSqFt": sqft,
            "LastSaleDate": sale_date,
            "LastSalePrice": sale_price,
            "LegalDesc": legal,
            "ExemptionCode": exemption,
            "TaxYear": 2026,
            "LastModified": np.datetime_as_string(modified, unit="s").astype(object),
        }
    )


def _break_records(rng: np.random.Generator, frame: pd.DataFrame, geoms: np.ndarray) -> np.ndarray:
    """Damage a fixed share of rows in place; returns the geometries (an object array of shapely or raw)."""
    n = len(frame)
    out = geoms.astype(object)
    kinds = list(BAD_RATES)
    # One kind per damaged row, chosen by a single draw so the shares stay exact and disjoint.
    draw = rng.random(n)
    edges = np.cumsum([BAD_RATES[k] for k in kinds])
    kind_of = np.searchsorted(edges, draw, side="right")
    # Even a small county shows every kind of damage at least once.
    for j, _ in enumerate(kinds):
        if n >= 4 * len(kinds) and not (kind_of == j).any():
            kind_of[(j + 1) * n // (len(kinds) + 1)] = j
    bounds = shapely.bounds(shapely.envelope(geoms.astype(object)))

    def rows(kind: str) -> np.ndarray:
        return np.flatnonzero(kind_of == kinds.index(kind))

    out[rows("null_geometry")] = None
    out[rows("empty_geometry")] = shapely.from_wkt("POLYGON EMPTY")
    for i in rows("unparseable_geometry"):
        out[i] = b"\x01\x03\x00\x00\x00\x01\x00\x00\x00\xff\xff\x00\x00" + rng.bytes(7)
    r = rows("self_intersecting")
    if len(r):
        x0, y0, x1, y1 = bounds[r].T
        out[r] = shapely.polygons(
            np.stack([np.stack(p, 1) for p in ((x0, y0), (x1, y1), (x1, y0), (x0, y1), (x0, y0))], 1)
        )
    r = rows("degenerate")
    if len(r):
        x0, y0, x1, _ = bounds[r].T
        xm = (x0 + x1) / 2
        out[r] = shapely.polygons(np.stack([np.stack(p, 1) for p in ((x0, y0), (xm, y0), (x1, y0), (x0, y0))], 1))
    r = rows("non_polygonal")
    if len(r):
        out[r] = shapely.points(bounds[r, 0], bounds[r, 1])
    r = rows("duplicate_key")
    r = r[r > 0]
    frame.loc[r, "PIN"] = frame["PIN"].to_numpy()[r - 1]
    frame.loc[rows("null_key"), "PIN"] = None
    r = rows("bad_attribute")
    for column in ("YearBuilt", "LandValue", "LastSaleDate"):
        frame[column] = frame[column].astype(object)
    for j, i in enumerate(r):
        column, value = [("YearBuilt", "unknown"), ("LandValue", "N/A"), ("LastSaleDate", "2019-13-45")][j % 3]
        frame.at[i, column] = value
    return out


def sample_batches(county: SampleCounty, chunk: int = 100_000) -> Iterator[pd.DataFrame]:
    """The sample county's rows as frames (source column names; `Shape` holds shapely geometries or, for
    unparseable records, raw bytes). Each chunk has its own seeded generator, so a chunk's content depends
    only on the seed and its position."""
    per_row = county.columns_per_row
    for start in range(0, county.parcels, chunk):
        ids = np.arange(start, min(start + chunk, county.parcels))
        rng = np.random.default_rng([county.seed, start])
        lots = _lots(rng, ids, per_row)
        acres = shapely.area(lots) / SQFT_PER_ACRE
        frame = _attributes(rng, ids, per_row, acres)
        frame.insert(0, "PIN", [f"{10_000_000_000 + 7 * i:011d}" for i in ids])
        frame["Shape"] = _break_records(rng, frame, lots)
        yield frame


def to_wkb_column(shapes: pd.Series) -> list[bytes | None]:
    """WKB for geometries; raw bytes (deliberately unparseable) and None pass through."""
    values = shapes.to_numpy()
    is_geom = np.array([isinstance(v, shapely.Geometry) for v in values])
    out = np.full(len(values), None, dtype=object)
    out[is_geom] = shapely.to_wkb(values[is_geom])
    raw = np.array([isinstance(v, bytes) for v in values])
    out[raw] = values[raw]
    return list(out)


def write_sample_county(path: Path, county: SampleCounty = SampleCounty()) -> Path:
    """Create (or replace) the sample MasterParcels table in the SQLite file at `path`, geometry as WKB.

    The file also gets OGR's plain-SQLite geometry metadata, so GDAL tools (ogr2ogr, QGIS) read the
    table as a layer too.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.unlink(missing_ok=True)
    con = sqlite3.connect(tmp)
    try:
        con.execute("PRAGMA journal_mode=OFF")
        con.execute("PRAGMA synchronous=OFF")
        con.execute(f"CREATE TABLE {SAMPLE_TABLE} ({', '.join(f'{c} {t}' for c, t in COLUMNS)})")
        insert = f"INSERT INTO {SAMPLE_TABLE} VALUES ({', '.join('?' * len(COLUMNS))})"
        for frame in sample_batches(county):
            frame["Shape"] = to_wkb_column(frame["Shape"])
            frame = frame.astype(object).where(frame.notna(), None)
            con.executemany(insert, frame[[c for c, _ in COLUMNS]].itertuples(index=False, name=None))
        # Not unique: real masters carry duplicate parcel numbers, and the sync must report them.
        con.execute(f"CREATE INDEX ix_{SAMPLE_TABLE}_pin ON {SAMPLE_TABLE} (PIN)")
        con.execute(f"CREATE INDEX ix_{SAMPLE_TABLE}_modified ON {SAMPLE_TABLE} (LastModified)")
        con.execute(
            "CREATE TABLE geometry_columns (f_table_name TEXT, f_geometry_column TEXT, geometry_type INTEGER, "
            "coord_dimension INTEGER, srid INTEGER, geometry_format TEXT)"
        )
        con.execute(
            "INSERT INTO geometry_columns VALUES (?, 'Shape', 0, 2, ?, 'WKB')", (SAMPLE_TABLE.lower(), SAMPLE_SRID)
        )
        con.execute("CREATE TABLE spatial_ref_sys (srid INTEGER UNIQUE, auth_name TEXT, auth_srid TEXT, srtext TEXT)")
        from pyproj import CRS

        con.execute(
            "INSERT INTO spatial_ref_sys VALUES (?, 'EPSG', ?, ?)",
            (SAMPLE_SRID, str(SAMPLE_SRID), CRS.from_epsg(SAMPLE_SRID).to_wkt("WKT1_GDAL")),
        )
        con.commit()
    finally:
        con.close()
    tmp.replace(path)
    return path
