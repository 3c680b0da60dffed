"""Settings come from TOML, .env and the environment; a county with another schema needs no code."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pandas as pd
import pyogrio
import pytest
import shapely
from pyproj import Transformer

from countydatasync.errors import ConfigError
from countydatasync.sample.county import SampleCounty, sample_batches
from countydatasync.settings import load_settings, settings_template
from countydatasync.sync import run_sync

from .sync.helpers import query


def test_toml_then_dotenv_then_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    for name in ("CDS_SOURCE__TABLE", "CDS_SOURCE__BATCH_SIZE", "CDS_OUTPUT__LAYER", "CDS_CONFIG"):
        monkeypatch.delenv(name, raising=False)
    (tmp_path / "countydatasync.toml").write_text(
        '[source]\ntable = "FromToml"\nbatch_size = 10\n[output]\nlayer = "toml_layer"\n'
    )
    (tmp_path / ".env").write_text("CDS_SOURCE__BATCH_SIZE=20\nCDS_OUTPUT__LAYER=env_file_layer\n")
    monkeypatch.setenv("CDS_OUTPUT__LAYER", "environment_layer")
    settings = load_settings()
    assert settings.source.table == "FromToml"  # TOML only
    assert settings.source.batch_size == 20  # .env beats TOML
    assert settings.output.layer == "environment_layer"  # the environment beats both
    assert settings.source.key_column == "PIN"  # default


def test_bad_settings_fail_with_a_clear_message(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_settings(tmp_path / "missing.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text('[stats]\nmeasures = ["owner_name"]\n')
    with pytest.raises(ConfigError, match="owner_name"):
        load_settings(bad, env_file=None)
    # an output name the staging databases use themselves
    clash = tmp_path / "clash.toml"
    clash.write_text('[[columns]]\nsource = "State"\nname = "staging_state"\ntype = "text"\n')
    with pytest.raises(ConfigError, match="reserved: staging_state"):
        load_settings(clash, env_file=None)


def test_invalid_settings_name_each_problem_but_never_echo_a_value(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A password under a mistyped name (one underscore) is an extra input: say where, not what."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("CDS_CONFIG", raising=False)
    secret = "Hunter2;}@%\"q'pw"
    env = tmp_path / ".env"
    env.write_text(f"CDS_SOURCE_PASSWORD={secret}\nCDS_SOURCE__BATCH_SIZE=many\n")
    with pytest.raises(ConfigError) as info:
        load_settings(env_file=env)
    assert str(info.value) == (
        "invalid settings (defaults, .env):\n"
        "  source.batch_size: Input should be a valid integer, unable to parse string as an integer\n"
        "  source_password: Extra inputs are not permitted"
    )
    assert info.value.__cause__ is None and info.value.__suppress_context__  # no ValidationError with the input


def test_the_init_template_is_valid_and_complete(tmp_path: Path) -> None:
    path = tmp_path / "countydatasync.toml"
    path.write_text(settings_template())
    loaded = load_settings(path, env_file=None)
    assert loaded.model_dump() == type(loaded)().model_dump()
    assert "password =" not in settings_template().replace("# password =", "")
    # each password's hint names the command that stores that one (the SMTP one needs --smtp)
    assert "CDS_SOURCE__PASSWORD or use `countydatasync credentials set`)" in settings_template()
    assert "CDS_ALERTS__PASSWORD or use `countydatasync credentials set --smtp`)" in settings_template()


def _other_county(path: Path, parcels: int) -> pd.DataFrame:
    """The sample county under other names: WKT in UTM zone 10N metres, table tax.Parcel, key ParcelNo."""
    to_utm = Transformer.from_crs(2927, 32610, always_xy=True)
    frames = []
    for frame in sample_batches(SampleCounty(parcels=parcels, seed=11)):
        geoms = frame["Shape"].to_numpy()
        ok = [isinstance(g, shapely.Geometry) for g in geoms]
        wkt = pd.Series([None] * len(frame), dtype=object)
        wkt[ok] = shapely.to_wkt(
            shapely.transform(
                geoms[ok], lambda xy: __import__("numpy").column_stack(to_utm.transform(xy[:, 0], xy[:, 1]))
            )
        )
        frames.append(
            pd.DataFrame(
                {
                    "ParcelNo": frame["PIN"],
                    "Geo": wkt,
                    "Owner": frame["OwnerName"],
                    "UseCode": frame["LandUseCode"],
                    "Assessed": frame["TotalValue"],
                    "Edited": frame["LastModified"],
                }
            )
        )
    data = pd.concat(frames, ignore_index=True)
    con = sqlite3.connect(path)
    data.to_sql("Parcel", con, index=False)
    con.close()
    return data


def test_a_county_with_another_schema_is_configured_by_settings_alone(tmp_path: Path) -> None:
    data = _other_county(tmp_path / "other.sqlite", 800)
    config = tmp_path / "county.toml"
    config.write_text(f"""
[source]
url = "sqlite:///{(tmp_path / "other.sqlite").as_posix()}"
table = "Parcel"
key_column = "ParcelNo"
key_name = "parcel_no"
geometry_column = "Geo"
geometry_encoding = "wkt"
srid = 32610
modified_column = "Edited"

[[columns]]
source = "Owner"
name = "owner"

[[columns]]
source = "UseCode"
name = "use_code"

[[columns]]
source = "Assessed"
name = "assessed_value"
type = "real"

[stats]
dimensions = ["use_code"]
measures = ["assessed_value"]

[output]
directory = "{(tmp_path / "out").as_posix()}"
layer = "county_parcels"
target_srid = 4326
""")
    settings = load_settings(config, env_file=None)
    result = run_sync(settings)
    assert result.reconciles and result.inserted > 700
    info = pyogrio.read_info(settings.output.geo_path, layer="county_parcels")
    assert info["crs"] == "EPSG:4326" and info["features"] == result.inserted
    frame = pyogrio.read_dataframe(settings.output.geo_path, layer="county_parcels")
    assert {"parcel_no", "owner", "use_code", "assessed_value"} <= set(frame.columns)
    lon, lat = frame.geometry.iloc[0].representative_point().coords[0]
    assert -124 < lon < -122 and 46 < lat < 48  # Thurston County, WA, in lon/lat order
    aggregates = query(settings.output.stats_path, "SELECT value, parcel_count FROM aggregates")
    assert aggregates["parcel_count"].sum() == result.inserted
    assert set(aggregates["value"]) <= set(data["UseCode"].dropna())


def test_an_empty_value_means_none_where_a_setting_may_be_empty(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The help texts promise "empty: no share limit", "empty keeps the source CRS": TOML has no null, so
    an empty string (or an empty environment variable) is how an operator writes that."""
    monkeypatch.chdir(tmp_path)
    config = tmp_path / "county.toml"
    config.write_text('[output]\ntarget_srid = ""\n[alerts]\nca_file = ""\nmax_rejected_rows = " "\n')
    monkeypatch.setenv("CDS_ALERTS__MAX_REJECTED_SHARE", "")
    settings = load_settings(config, env_file=None)
    assert settings.output.target_srid is None and settings.alerts.ca_file is None
    assert settings.alerts.max_rejected_share is None and settings.alerts.max_rejected_rows is None
    with pytest.raises(ConfigError, match="output.layer"):  # a setting that may not be empty still may not
        config.write_text('[output]\nlayer = ""\n')
        load_settings(config, env_file=None)


def test_a_settings_file_with_a_byte_order_mark_and_crlf_line_ends_reads(tmp_path: Path) -> None:
    """Windows editors (Notepad before 2019, PowerShell 5's Out-File -Encoding utf8) start a UTF-8 file
    with a byte order mark, which TOML does not allow: the file failed as 'Invalid statement'."""
    config = tmp_path / "county.toml"
    config.write_bytes(b'\xef\xbb\xbf[source]\r\ntable = "Parcels"\r\n\r\n[alerts]\r\nto = ["gis@county.local"]\r\n')
    settings = load_settings(config, env_file=None)
    assert settings.source.table == "Parcels" and settings.alerts.to == ["gis@county.local"]
