"""torch dataset over the Arrow shards (map-style)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import torch
from torch.utils.data import Dataset

from clamp.data.shards import open_shards, read_table, row_patches
from clamp.data.views import VIEW_OPTIONS
from clamp.errors import UserError


class ShardDataset(Dataset):
    """Map-style dataset over memory-mapped shards; items are dicts with a `patches` LongTensor."""

    def __init__(self, dataset_dir: str | Path, split: str | None = "train", views: Sequence[str] = ()) -> None:
        # one manifest and the shards it lists, mapped together: a rebuild running meanwhile
        # cannot hand this dataset half of its new shards (clamp.data.shards.open_shards)
        columns = ["id", "texts", "patches", "split", "metadata", "n_patches", "n_chars"]
        self.manifest, self.tables = open_shards(dataset_dir, columns)
        self.paths = [Path(dataset_dir) / s["path"] for s in self.manifest["shards"]]
        index: list[tuple[int, int]] = []
        for t_idx, table in enumerate(self.tables):
            rows = np.arange(len(table))
            if split:
                rows = np.flatnonzero(pc.equal(table.column("split"), split).to_numpy(zero_copy_only=False))
            index.extend((t_idx, int(r)) for r in rows)
        self.index = index
        # per view: the view table of each item (and its row there), or None for an item without one
        self.views: dict[str, tuple[list[pa.Table], list[tuple[int, int] | None]]] = {
            name: self._open_view(Path(dataset_dir), name) for name in views
        }

    def _open_view(self, root: Path, name: str) -> tuple[list[pa.Table], list[tuple[int, int] | None]]:
        files = self.manifest.get("views", {}).get(name)
        if files is None:
            flag = VIEW_OPTIONS[name]
            raise UserError(
                f"the dataset {root} has no {name} views: rebuild it with `clamp build {flag}s`"
                f" (or train with {flag} 0)"
            )
        tables = [read_table(root / f["path"], ["id", "patches"]) for f in files]
        where = {row_id: (v, r) for v, t in enumerate(tables) for r, row_id in enumerate(t.column("id").to_pylist())}
        ids = [t.column("id").to_pylist() for t in self.tables]
        return tables, [where.get(ids[t][r]) for t, r in self.index]

    def __len__(self) -> int:
        return len(self.index)

    def lengths(self, column: str = "n_patches") -> np.ndarray:
        """Per item, in index order: patches (`n_patches`) or characters (`n_chars`)."""
        per_table = [t.column(column).to_numpy() for t in self.tables]
        return np.array([per_table[t][r] for t, r in self.index], dtype=np.int64)

    def column_texts(self) -> list[str]:
        """Every text candidate of the items, in index order (flattened)."""
        per_table = [t.column("texts").to_pylist() for t in self.tables]
        return [text for t, r in self.index for text in per_table[t][r]]

    def __getitem__(self, i: int) -> dict:
        t_idx, row = self.index[i]
        table = self.tables[t_idx]
        return {
            "id": table.column("id")[row].as_py(),
            "texts": table.column("texts")[row].as_py(),
            "metadata": json.loads(table.column("metadata")[row].as_py()),
            "patches": torch.from_numpy(row_patches(table, row).astype(np.int64)),
            "views": {
                name: torch.from_numpy(row_patches(tables[found[0]], found[1]).astype(np.int64))
                for name, (tables, where) in self.views.items()
                if (found := where[i]) is not None
            },
        }

    def view_counts(self) -> dict[str, int]:
        """Per view: how many of this dataset's items have one."""
        return {name: sum(w is not None for w in where) for name, (_, where) in self.views.items()}
