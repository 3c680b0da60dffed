"""Benchmark: latency of the map's viewport query (GET /api/parcels) on a sample county.

Builds the sample county and its staging databases with the real pipeline (once per size, kept under
bench/results/), then asks for a few hundred random viewports holding about `--per-view` parcels each,
with the zoom a 1280-pixel-wide map would have, and prints p50/p95/p99. Requests go through an in-process
ASGI client by default (no network, but the full app: routing, middleware, serialisation) or, with
--live, to a uvicorn server on 127.0.0.1.

    python bench/web_viewport.py --parcels 50000
    python bench/web_viewport.py --parcels 1000000 --requests 300 --live
"""

from __future__ import annotations

import argparse
import math
import random
import socket
import statistics
import threading
import time
from pathlib import Path

import httpx
import uvicorn
from fastapi.testclient import TestClient

from countydatasync.sample.county import SampleCounty, write_sample_county
from countydatasync.settings import Settings
from countydatasync.sync import run_sync
from countydatasync.web import create_app
from countydatasync.web.app import freeze_startup_heap

RESULTS = Path(__file__).resolve().parent / "results"
MAP_WIDTH_PX, MAP_HEIGHT_PX = 1280, 800


def staging_for(parcels: int) -> Settings:
    root = RESULTS / f"county-{parcels}"
    source = root / "county.sqlite"
    settings = Settings(source={"url": f"sqlite:///{source}"}, output={"directory": root / "staging"})
    if not settings.output.working_path.is_file():
        started = time.perf_counter()
        write_sample_county(source, SampleCounty(parcels=parcels))
        print(f"sample county of {parcels:,} parcels written in {time.perf_counter() - started:.1f} s")
        started = time.perf_counter()
        result = run_sync(settings)
        took = time.perf_counter() - started
        print(f"first sync: {result.status}, {result.inserted:,} parcels in {took:.1f} s")
    return settings


def viewports(extent: list[float], parcels: int, per_view: int, count: int, seed: int) -> list[tuple]:
    """Random viewports of the screen's aspect, sized to hold about `per_view` parcels, inside the extent."""
    west, south, east, north = extent
    share = min(1.0, per_view / parcels)
    # Degrees of longitude per degree of latitude for a screen of MAP_WIDTH_PX x MAP_HEIGHT_PX.
    aspect = (MAP_WIDTH_PX / MAP_HEIGHT_PX) / math.cos(math.radians((south + north) / 2))
    height = math.sqrt(share * (east - west) * (north - south) / aspect)
    width = height * aspect
    zoom = int(math.log2(MAP_WIDTH_PX * 360 / (256 * width)))
    rng = random.Random(seed)
    out = []
    for _ in range(count):
        x = rng.uniform(west, max(west, east - width))
        y = rng.uniform(south, max(south, north - height))
        out.append((f"{x:.6f},{y:.6f},{x + width:.6f},{y + height:.6f}", zoom))
    return out


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def measure(client: httpx.Client, views: list[tuple], warmup: int) -> tuple[list[float], list[int], list[int]]:
    times, features, sizes = [], [], []
    for i, (bbox, zoom) in enumerate(views):
        started = time.perf_counter()
        response = client.get("/api/parcels", params={"bbox": bbox, "zoom": zoom})
        elapsed = time.perf_counter() - started
        response.raise_for_status()
        if i >= warmup:
            times.append(elapsed * 1000)
            features.append(response.json()["returned"])
            sizes.append(len(response.content))
    return times, features, sizes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--parcels", type=int, default=50_000, help="sample county size (default 50000)")
    parser.add_argument("--requests", type=int, default=300, help="measured viewports (default 300)")
    parser.add_argument("--per-view", type=int, default=2_000, help="parcels per viewport (default 2000)")
    parser.add_argument("--warmup", type=int, default=20, help="unmeasured first requests (default 20)")
    parser.add_argument("--seed", type=int, default=1, help="viewport seed (default 1)")
    parser.add_argument("--live", action="store_true", help="through uvicorn on 127.0.0.1, not in-process")
    args = parser.parse_args()

    settings = staging_for(args.parcels)
    app = create_app(settings)
    freeze_startup_heap()  # as `countydatasync serve` does
    server = None
    if args.live:
        port = _free_port()
        server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
        threading.Thread(target=server.run, daemon=True).start()
        while not server.started:
            time.sleep(0.05)
        client = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30)
    else:
        client = TestClient(app, base_url="http://bench")  # in-process, the same client the tests use
    try:
        extent = client.get("/api/map-config").json()["extent"]
        views = viewports(extent, args.parcels, args.per_view, args.requests + args.warmup, args.seed)
        times, features, sizes = measure(client, views, args.warmup)
    finally:
        client.close()
        if server:
            server.should_exit = True
    cuts = statistics.quantiles(times, n=100)
    how = "live uvicorn" if args.live else "in-process"
    print(
        f"{how}, {args.parcels:,} parcels, {len(times)} viewports "
        f"at zoom {views[0][1]}: features mean {statistics.mean(features):.0f} (max {max(features)}), "
        f"payload mean {statistics.mean(sizes) / 1024:.0f} KiB"
    )
    print(f"latency ms: p50 {cuts[49]:.1f}  p95 {cuts[94]:.1f}  p99 {cuts[98]:.1f}  max {max(times):.1f}")


if __name__ == "__main__":
    main()
