"""Ship measures in true metres and degrees from north, whatever CRS the polygons are in."""

from __future__ import annotations

import geopandas as gpd
import numpy as np
import pytest
import shapely
from pyproj import Geod, Transformer
from shapely import affinity

from geosam.errors import LabelsError
from geosam.io.ship_attributes import COLUMNS, ship_attributes

UTM33 = "EPSG:32633"
GEOD = Geod(ellps="WGS84")
# UTM shrinks ground distances by k0 = 0.9996 on the central meridian (15° E for zone 33).
K0 = 0.9996


def utm(lon: float, lat: float, crs: str = UTM33) -> tuple[float, float]:
    return Transformer.from_crs("EPSG:4326", crs, always_xy=True).transform(lon, lat)


def ship(x: float, y: float, length: float, width: float, ccw_from_east: float) -> shapely.Polygon:
    """A length x width rectangle centred on (x, y), long axis `ccw_from_east` degrees."""
    box = shapely.box(x - length / 2, y - width / 2, x + length / 2, y + width / 2)
    return affinity.rotate(box, ccw_from_east, origin=(x, y))


def axis_difference(a: float, b: float) -> float:
    """Angle between two axes (directions modulo 180), in degrees."""
    return abs((a - b + 90.0) % 180.0 - 90.0)


def true_axis(polygon: shapely.Polygon, crs: str) -> tuple[float, float]:
    """(heading, length) of a rectangle's long axis, from Geod between its short-side midpoints."""
    ring = np.asarray(polygon.exterior.coords)[:4]
    sides = np.roll(ring, -1, axis=0) - ring
    long0 = int(np.argmax(np.hypot(sides[:, 0], sides[:, 1])))
    mid_a = (ring[(long0 + 1) % 4] + ring[(long0 + 2) % 4]) / 2  # short side after the long one
    mid_b = (ring[(long0 + 3) % 4] + ring[long0]) / 2  # the opposite short side
    to_ll = Transformer.from_crs(crs, "EPSG:4326", always_xy=True)
    (lon_a, lon_b), (lat_a, lat_b) = to_ll.transform([mid_a[0], mid_b[0]], [mid_a[1], mid_b[1]])
    azimuth, _, distance = GEOD.inv(lon_a, lat_a, lon_b, lat_b)
    return azimuth % 180.0, distance


@pytest.fixture
def rotated_ship() -> gpd.GeoSeries:
    """100 m x 20 m (UTM grid metres) on the central meridian at 40° N, rotated 30° CCW."""
    x, y = utm(15.0, 40.0)
    return gpd.GeoSeries([ship(x, y, 100.0, 20.0, 30.0)], crs=UTM33, index=["s1"])


@pytest.mark.parametrize("crs", [UTM33, "EPSG:3857", "EPSG:4326"])
def test_rotated_ship_in_any_crs(rotated_ship: gpd.GeoSeries, crs: str) -> None:
    attrs = ship_attributes(rotated_ship.to_crs(crs))
    assert list(attrs.columns) == list(COLUMNS)
    assert list(attrs.index) == ["s1"]
    row = attrs.loc["s1"]
    assert row.area_m2 == pytest.approx(2000.0, rel=0.005)
    assert row.length_m == pytest.approx(100.0, rel=0.01)
    assert row.width_m == pytest.approx(20.0, rel=0.01)
    assert axis_difference(row.heading_deg, 60.0) < 1.0
    assert 0.0 <= row.heading_deg < 180.0
    # Tighter: grid metres are ground metres times k0, and the axis matches Geod's azimuth.
    assert row.area_m2 == pytest.approx(2000.0 / K0**2, rel=1e-5)
    assert row.length_m == pytest.approx(100.0 / K0, rel=1e-6)
    assert row.width_m == pytest.approx(20.0 / K0, rel=1e-6)
    heading, length = true_axis(rotated_ship.iloc[0], UTM33)
    assert row.length_m == pytest.approx(length, rel=1e-6)
    assert axis_difference(row.heading_deg, heading) < 1e-3


def test_same_numbers_in_every_crs(rotated_ship: gpd.GeoSeries) -> None:
    frames = [ship_attributes(rotated_ship.to_crs(c)) for c in (UTM33, "EPSG:3857", "EPSG:4326")]
    for other in frames[1:]:
        np.testing.assert_allclose(other.to_numpy(), frames[0].to_numpy(), rtol=1e-7)


def test_centroid_lon_lat_match_pyproj() -> None:
    x, y = 512345.0, 4431234.0
    series = gpd.GeoSeries([ship(x, y, 120.0, 25.0, 75.0)], crs=UTM33)
    lon, lat = Transformer.from_crs(UTM33, "EPSG:4326", always_xy=True).transform(x, y)
    for crs in (UTM33, "EPSG:3857", "EPSG:4326"):
        row = ship_attributes(series.to_crs(crs)).iloc[0]
        assert row.lon == pytest.approx(lon, abs=1e-8)  # about 1 mm
        assert row.lat == pytest.approx(lat, abs=1e-8)


def test_north_south_ship_has_heading_zero() -> None:
    x, y = utm(15.0, 40.0)
    attrs = ship_attributes(gpd.GeoSeries([ship(x, y, 100.0, 20.0, 90.0)], crs=UTM33))
    assert attrs.heading_deg.iloc[0] == pytest.approx(0.0, abs=1e-6)
    assert attrs.length_m.iloc[0] == pytest.approx(100.0 / K0, rel=1e-6)


def test_north_south_ship_in_degrees_has_heading_zero() -> None:
    polygon = shapely.box(-70.0001, 42.0, -69.9999, 42.001)  # 16.6 m x 111 m
    row = ship_attributes(gpd.GeoSeries([polygon], crs="EPSG:4326")).iloc[0]
    assert row.heading_deg == pytest.approx(0.0, abs=1e-6)
    _, _, length = GEOD.inv(-70.0, 42.0, -70.0, 42.001)
    assert row.length_m == pytest.approx(length, rel=1e-6)


def test_heading_is_from_true_north_not_grid_north() -> None:
    # 2° west of the central meridian at 40° N, grid north is ~1.3° off true north.
    x, y = utm(13.0, 40.0)
    polygon = ship(x, y, 100.0, 20.0, 90.0)
    row = ship_attributes(gpd.GeoSeries([polygon], crs=UTM33)).iloc[0]
    heading, length = true_axis(polygon, UTM33)
    assert axis_difference(row.heading_deg, 0.0) > 1.0
    assert axis_difference(row.heading_deg, heading) < 1e-3
    assert row.length_m == pytest.approx(length, rel=1e-6)


def test_multipolygon_is_one_ship() -> None:
    x, y = utm(15.0, 40.0)
    bow = shapely.box(x, y, x + 40, y + 20)
    stern = shapely.box(x + 60, y, x + 100, y + 20)
    row = ship_attributes(gpd.GeoSeries([shapely.MultiPolygon([bow, stern])], crs=UTM33)).iloc[0]
    assert row.area_m2 == pytest.approx(1600.0 / K0**2, rel=1e-5)
    assert row.length_m == pytest.approx(100.0 / K0, rel=1e-6)
    assert row.width_m == pytest.approx(20.0 / K0, rel=1e-6)
    assert row.heading_deg == pytest.approx(90.0, abs=1e-3)


def test_holes_are_not_ground() -> None:
    x, y = utm(15.0, 40.0)
    hull = shapely.box(x, y, x + 100, y + 20)
    polygon = hull.difference(shapely.box(x + 40, y + 5, x + 60, y + 15))  # 200 m² hole
    row = ship_attributes(gpd.GeoSeries([polygon], crs=UTM33)).iloc[0]
    assert row.area_m2 == pytest.approx(1800.0 / K0**2, rel=1e-5)


def test_ship_across_the_antimeridian() -> None:
    crs = "EPSG:32660"  # UTM 60N: central meridian 177° E, so 180° lies 3° east of it
    x, y = utm(180.0, 10.0, crs)
    polygon = ship(x, y, 100.0, 20.0, 30.0)
    lonlat = gpd.GeoSeries([polygon], crs=crs).to_crs("EPSG:4326")
    lons = shapely.get_coordinates(lonlat.iloc[0])[:, 0]
    assert lons.max() > 179.9 and lons.min() < -179.9  # it does straddle
    for series in (gpd.GeoSeries([polygon], crs=crs), lonlat):
        row = ship_attributes(series).iloc[0]
        assert row.area_m2 == pytest.approx(2000.0, rel=0.005)
        assert row.length_m == pytest.approx(100.0, rel=0.01)
        assert axis_difference(row.heading_deg, 60.0) < 1.0
        assert -180.0 <= row.lon < 180.0
        assert axis_difference(row.lon, 180.0) < 1e-6
        assert row.lat == pytest.approx(10.0, abs=1e-6)


def test_missing_and_empty_geometries_give_nan_rows(rotated_ship: gpd.GeoSeries) -> None:
    series = gpd.GeoSeries(
        [None, rotated_ship.iloc[0], shapely.Polygon()], crs=UTM33, index=[7, 3, 5]
    )
    attrs = ship_attributes(series)
    assert list(attrs.index) == [7, 3, 5]
    assert attrs.loc[[7, 5]].isna().all().all()
    assert attrs.loc[3].notna().all()


def test_empty_series_gives_empty_frame() -> None:
    attrs = ship_attributes(gpd.GeoSeries([], crs=UTM33))
    assert list(attrs.columns) == list(COLUMNS)
    assert len(attrs) == 0
    assert (attrs.dtypes == np.float64).all()


def test_no_crs_is_refused(rotated_ship: gpd.GeoSeries) -> None:
    with pytest.raises(LabelsError, match="no CRS"):
        ship_attributes(rotated_ship.set_crs(None, allow_override=True))


def test_non_polygons_are_refused() -> None:
    series = gpd.GeoSeries([shapely.box(0, 0, 1, 1), shapely.Point(0, 0)], crs=UTM33)
    with pytest.raises(LabelsError, match="got Point at index 1"):
        ship_attributes(series)
