"""Bulk loading of the GeoPackage's R-tree when a layer is filled from empty.

Inserting a million boxes one by one makes SQLite's R-tree split nodes over and over (it took longer than
writing the features). An empty tree is instead packed bottom-up with Sort-Tile-Recursive: sort the boxes
by centre x into vertical slices, sort each slice by centre y, cut runs into full nodes, and repeat for the
parents. The nodes are written straight into the R-tree's shadow tables in SQLite's own node format:
a 4-byte header (tree depth, used in the root only, and cell count, both big-endian 16-bit) followed by
cells of a 64-bit big-endian id and float32 big-endian (minx, maxx, miny, maxy), rounded outward so every
stored box contains the true one. `rtreecheck()` verifies the result in the tests.
"""

from __future__ import annotations

import math
import sqlite3

import numpy as np

from countydatasync.load.geopackage import q

CELL = np.dtype([("id", ">i8"), ("box", ">f4", 4)])


def _outward(boxes: np.ndarray) -> np.ndarray:
    """float64 (minx, maxx, miny, maxy) to float32 boxes that contain them."""
    f = boxes.astype(np.float32)
    low, high = f[:, [0, 2]], f[:, [1, 3]]
    low = np.where(low > boxes[:, [0, 2]], np.nextafter(low, np.float32(-np.inf)), low)
    high = np.where(high < boxes[:, [1, 3]], np.nextafter(high, np.float32(np.inf)), high)
    return np.stack([low[:, 0], high[:, 0], low[:, 1], high[:, 1]], axis=1)


class RtreeBulkLoader:
    """Collects (id, box) pairs during a run in a temp table and packs them into an empty R-tree at the end.
    Memory holds one slice of boxes at a time plus one box per leaf node."""

    def __init__(self, con: sqlite3.Connection, schema: str, name: str) -> None:
        self.con, self.schema, self.name = con, schema, name
        con.execute(
            "CREATE TEMP TABLE IF NOT EXISTS rtree_stage (cx REAL, cy REAL, id INTEGER, minx REAL, "
            "maxx REAL, miny REAL, maxy REAL)"
        )
        con.execute("DELETE FROM temp.rtree_stage")
        self.count = 0

    def add(self, ids: list[int], bounds: np.ndarray) -> None:
        """bounds: shapely order (minx, miny, maxx, maxy)."""
        cx = (bounds[:, 0] + bounds[:, 2]) / 2
        cy = (bounds[:, 1] + bounds[:, 3]) / 2
        self.con.executemany(
            "INSERT INTO temp.rtree_stage VALUES (?, ?, ?, ?, ?, ?, ?)",
            zip(
                cx.tolist(),
                cy.tolist(),
                ids,
                bounds[:, 0].tolist(),
                bounds[:, 2].tolist(),
                bounds[:, 1].tolist(),
                bounds[:, 3].tolist(),
                strict=True,
            ),
        )
        self.count += len(ids)

    def _node_size(self) -> int:
        row = self.con.execute(
            f"SELECT length(data) FROM {self.schema}.{q(self.name + '_node')} WHERE nodeno = 1"
        ).fetchone()
        return int(row[0])

    def build(self) -> tuple[float, float, float, float] | None:
        """Write the packed tree; returns the extent (minx, miny, maxx, maxy), or None when empty."""
        if self.count == 0:
            return None
        size = self._node_size()
        fanout = (size - 4) // CELL.itemsize
        node_t, rowid_t, parent_t = (f"{self.schema}.{q(self.name + s)}" for s in ("_node", "_rowid", "_parent"))
        for table in (node_t, rowid_t, parent_t):
            self.con.execute(f"DELETE FROM {table}")

        leaves_per_slice = math.ceil(math.sqrt(math.ceil(self.count / fanout)))
        slice_rows = leaves_per_slice * fanout
        next_node = 2
        parents: list[tuple[int, np.ndarray]] = []  # (node number, box) of every leaf
        cursor = self.con.execute("SELECT cy, id, minx, maxx, miny, maxy FROM temp.rtree_stage ORDER BY cx")
        nodes: list[tuple[int, bytes]] = []
        while rows := cursor.fetchmany(slice_rows):
            part = np.array(rows, dtype=np.float64)
            part = part[np.argsort(part[:, 0], kind="stable")]
            ids, boxes = part[:, 1].astype(np.int64), _outward(part[:, 2:6])
            for start in range(0, len(part), fanout):
                nodeno = next_node
                next_node += 1
                nodes.append((nodeno, self._blob(ids[start : start + fanout], boxes[start : start + fanout], size)))
                self.con.executemany(
                    f"INSERT INTO {rowid_t} (rowid, nodeno) VALUES (?, ?)",
                    ((int(i), nodeno) for i in ids[start : start + fanout]),
                )
                parents.append((nodeno, self._cover(boxes[start : start + fanout])))
            if len(nodes) > 256:
                self.con.executemany(f"INSERT INTO {node_t} (nodeno, data) VALUES (?, ?)", nodes)
                nodes = []
        self.con.executemany(f"INSERT INTO {node_t} (nodeno, data) VALUES (?, ?)", nodes)

        depth = 0
        level = parents
        while True:
            depth += 1 if len(level) > 1 else 0
            if len(level) == 1:
                # A single node at this level is the root: renumber it to 1 as SQLite expects.
                only = level[0][0]
                self._make_root(only, depth, node_t, rowid_t, parent_t)
                return self.con.execute(
                    "SELECT min(minx), min(miny), max(maxx), max(maxy) FROM temp.rtree_stage"
                ).fetchone()
            level, next_node = self._pack_level(level, fanout, size, next_node, node_t, parent_t)

    def _pack_level(
        self, level: list[tuple[int, np.ndarray]], fanout: int, size: int, next_node: int, node_t: str, parent_t: str
    ) -> tuple[list[tuple[int, np.ndarray]], int]:
        ids = np.array([n for n, _ in level], dtype=np.int64)
        boxes = np.array([b for _, b in level], dtype=np.float32)
        centre_x, centre_y = (boxes[:, 0] + boxes[:, 1]) / 2, (boxes[:, 2] + boxes[:, 3]) / 2
        order = np.argsort(centre_x, kind="stable")
        per_slice = math.ceil(math.sqrt(math.ceil(len(level) / fanout))) * fanout
        out: list[tuple[int, np.ndarray]] = []
        for s in range(0, len(order), per_slice):
            chunk = order[s : s + per_slice]
            chunk = chunk[np.argsort(centre_y[chunk], kind="stable")]
            for start in range(0, len(chunk), fanout):
                members = chunk[start : start + fanout]
                nodeno = next_node
                next_node += 1
                self.con.execute(
                    f"INSERT INTO {node_t} (nodeno, data) VALUES (?, ?)",
                    (nodeno, self._blob(ids[members], boxes[members], size)),
                )
                self.con.executemany(
                    f"INSERT INTO {parent_t} (nodeno, parentnode) VALUES (?, ?)",
                    ((int(child), nodeno) for child in ids[members]),
                )
                out.append((nodeno, self._cover(boxes[members])))
        return out, next_node

    def _make_root(self, nodeno: int, depth: int, node_t: str, rowid_t: str, parent_t: str) -> None:
        data = bytearray(self.con.execute(f"SELECT data FROM {node_t} WHERE nodeno = ?", (nodeno,)).fetchone()[0])
        data[0:2] = depth.to_bytes(2, "big")
        self.con.execute(f"DELETE FROM {node_t} WHERE nodeno = ?", (nodeno,))
        self.con.execute(f"INSERT INTO {node_t} (nodeno, data) VALUES (1, ?)", (bytes(data),))
        if depth == 0:
            self.con.execute(f"UPDATE {rowid_t} SET nodeno = 1 WHERE nodeno = ?", (nodeno,))
        else:
            self.con.execute(f"DELETE FROM {parent_t} WHERE nodeno = ?", (nodeno,))
            self.con.execute(f"UPDATE {parent_t} SET parentnode = 1 WHERE parentnode = ?", (nodeno,))

    @staticmethod
    def _cover(boxes: np.ndarray) -> np.ndarray:
        return np.array([boxes[:, 0].min(), boxes[:, 1].max(), boxes[:, 2].min(), boxes[:, 3].max()], dtype=np.float32)

    @staticmethod
    def _blob(ids: np.ndarray, boxes: np.ndarray, size: int) -> bytes:
        cells = np.zeros(len(ids), dtype=CELL)
        cells["id"] = ids
        cells["box"] = boxes
        header = (0).to_bytes(2, "big") + len(ids).to_bytes(2, "big")
        body = header + cells.tobytes()
        return body + bytes(size - len(body))
