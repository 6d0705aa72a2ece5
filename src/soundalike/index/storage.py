"""How the vectors that are searched are stored on disk: float32, float16, or int8 with per-dimension scales.

The catalog keeps every vector at full precision; the index keeps a copy of the *normalised* vectors
for exact re-scoring and for the exact backend. At a million 3-minute tracks that copy is the
largest thing a library holds (36 million 88-d segment vectors: 12.7 GB as float32), so large
matrices are stored compactly:

``float16``
    half of float32; a score moves by about 1e-4, recall@10 of exact search stays at 0.999-1.0.
``int8``
    a quarter of float32: codes with one float32 scale per dimension,
    ``row ≈ codes[row] * scales`` (codes in -127 .. 127). Scores move by about 2e-3, which swaps
    neighbours whose scores are that close: recall@10 0.96-0.995 on clustered test data.

Rows are memory-mapped and read back as float32 for any slice or row selection (an int8 matrix
through :class:`Int8Matrix`), so every backend re-scores against them as if they were the float32
matrix, and many processes share their pages.

The rule (:func:`storage_for`): matrices of fewer than :data:`COMPACT_FROM_ROWS` rows stay float32
(they are small, and their scores are then bit-identical to the exact reference); larger ones are
float16, the compact form whose recall cost is negligible; ``int8`` is chosen explicitly. Int8
scales come from the first :data:`SCALE_SAMPLE_ROWS` rows written: ``min(bound, 1.5 * max |x|) / 127``
per dimension, where ``bound`` is the largest value a normalised vector can hold in that dimension
(its family's scale); larger values are clipped. The recall cost against float32 exact search is
measured in ``benchmarks/results/scale.md`` and tested in ``tests/index/test_scale.py``.

Files: ``NAME.npy`` (float32 rows, or int8 codes) and, for int8, ``NAME.scales.npy``.
"""

from __future__ import annotations

import contextlib
import logging
import mmap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
from numpy.lib.format import open_memmap

log = logging.getLogger(__name__)

STORAGES = ("float32", "float16", "int8")
COMPACT_FROM_ROWS = 100_000
"""Matrices with at least this many rows are stored as float16 by default."""
SCALE_SAMPLE_ROWS = 65_536
"""Rows whose largest absolute values set the int8 scales."""
SCALE_MARGIN = 1.5
"""Headroom over the sample's largest value, for rows the sample did not see."""


def storage_for(rows: int) -> str:
    """The default storage of a search matrix of ``rows`` rows."""
    return "float16" if rows >= COMPACT_FROM_ROWS else "float32"


class Int8Matrix:
    """A read-only matrix stored as int8 codes times per-dimension scales, read as float32.

    Behaves like a 2-D float32 array for what the index backends need: ``shape``, ``len``,
    indexing by an int, a slice or an array of rows (each returns a new float32 array), and
    ``np.asarray`` (which materialises the whole matrix: avoid it on large ones).

    Parameters
    ----------
    codes : np.ndarray [shape=(n, dim), dtype=int8]
        Typically memory-mapped.
    scales : np.ndarray [shape=(dim,), dtype=float32]
    """

    dtype = np.dtype(np.float32)
    ndim = 2

    def __init__(self, codes: np.ndarray, scales: np.ndarray) -> None:
        if codes.ndim != 2 or codes.dtype != np.int8 or scales.shape != (codes.shape[1],):
            raise ValueError(
                f"int8 matrix: expected int8 codes (n, dim) and scales (dim,), found {codes.dtype} {codes.shape} "
                f"and {scales.shape}"
            )
        self.codes = codes
        self.scales = np.asarray(scales, dtype=np.float32)
        self.shape: tuple[int, int] = (int(codes.shape[0]), int(codes.shape[1]))

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, key: Any) -> np.ndarray:
        return np.multiply(self.codes[key], self.scales, dtype=np.float32)

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        out = self[:]
        return out if dtype is None else out.astype(dtype, copy=False)

    @property
    def nbytes(self) -> int:
        return int(self.codes.nbytes + self.scales.nbytes)


SearchMatrix = np.ndarray | Int8Matrix
"""What a loaded index re-scores against."""


def read_rows(matrix: SearchMatrix, start: int, stop: int) -> np.ndarray:
    """Rows ``start:stop`` as a new float32 array, without keeping their pages in this process.

    A build reads a memory-mapped matrix once from end to end; the pages it touched would otherwise
    stay mapped (and counted in its resident memory) until the matrix is closed. They are handed
    back to the page cache (``MADV_DONTNEED`` on a read-only file mapping loses nothing).
    """
    rows = np.array(matrix[start:stop], dtype=np.float32)
    _forget(matrix.codes if isinstance(matrix, Int8Matrix) else matrix, start, stop)
    return rows


def read_sample(matrix: SearchMatrix, rows: np.ndarray) -> np.ndarray:
    """Rows at the sorted positions ``rows`` as a new float32 array, without keeping their pages.

    A training sample is spread over the whole file; with transparent huge pages each row read
    can map 2 MB, so the pages are handed back once the sample is copied.
    """
    out = np.array(matrix[rows], dtype=np.float32)
    if len(rows):
        _forget(matrix.codes if isinstance(matrix, Int8Matrix) else matrix, int(rows[0]), int(rows[-1]) + 1)
    return out


def _forget(array: np.ndarray, start: int, stop: int) -> None:
    """Drop the mapped pages of rows ``start:stop`` of a read-only ``np.memmap`` (best effort)."""
    mapping = _mapping(array)
    if mapping is None:
        return
    row_bytes = array.strides[0]
    # np.memmap maps from the offset rounded down to the allocation granularity.
    base = int(array.offset) % mmap.ALLOCATIONGRANULARITY  # type: ignore[attr-defined]  # a memmap: _mapping said so
    lo = base + start * row_bytes
    hi = base + stop * row_bytes
    lo -= lo % mmap.PAGESIZE
    hi -= hi % mmap.PAGESIZE
    if hi > lo:
        with contextlib.suppress(OSError, ValueError):
            mapping.madvise(mmap.MADV_DONTNEED, lo, hi - lo)


def _mapping(array: Any) -> mmap.mmap | None:
    """The ``mmap`` behind an ``np.memmap``, when ``madvise`` can be asked of it."""
    mapping = getattr(array, "_mmap", None)
    if not isinstance(array, np.memmap) or mapping is None or not hasattr(mapping, "madvise"):
        return None
    return mapping


def advise_random(array: np.ndarray) -> bool:
    """Tell the kernel that a read-only ``np.memmap`` is read at random rows (``MADV_RANDOM``).

    Without it, each row a query re-scores on a cold page cache pulls in the kernel's readahead
    window around it: the first clip query on a freshly started 1M-track library (9.4 GB of index,
    caches dropped) took 7.7 s, most of it reading 6 GB of segment rows it did not need; with it,
    0.9 s, and the page cache held 2 GB instead of 8. Queries after the first are unchanged.

    Returns whether the advice was given (not for in-memory arrays, nor where ``madvise`` is missing).
    """
    if not _advise(array, mmap.MADV_RANDOM):
        return False
    array._random_reads = True  # type: ignore[attr-defined]
    return True


@contextlib.contextmanager
def scanning(matrix: SearchMatrix) -> Iterator[None]:
    """Inside the block, a matrix mapped for random reads (:func:`advise_random`) is read ahead as a
    scan of every row in order wants (``MADV_SEQUENTIAL``), and for random reads again after it: an
    exact search over 1M float16 track rows on a cold page cache took 16.8 s with random-read advice,
    2.4 s so, 1.7 s with the kernel's default advice."""
    array = matrix.codes if isinstance(matrix, Int8Matrix) else matrix
    scanned = getattr(array, "_random_reads", False) and _advise(array, mmap.MADV_SEQUENTIAL)
    try:
        yield
    finally:
        if scanned:
            _advise(array, mmap.MADV_RANDOM)


def _advise(array: Any, advice: int) -> bool:
    """``madvise`` the whole mapping of an ``np.memmap``; whether it was given."""
    mapping = _mapping(array)
    if mapping is None:
        return False
    try:
        mapping.madvise(advice)
    except (OSError, ValueError):
        return False
    return True


def as_float32(matrix: SearchMatrix, *, chunk: int = 65_536) -> np.ndarray:
    """The whole matrix as an in-memory float32 array (for backends that build from one)."""
    if isinstance(matrix, np.ndarray) and not isinstance(matrix, np.memmap):
        return np.ascontiguousarray(matrix, dtype=np.float32)
    out = np.empty(matrix.shape, dtype=np.float32)
    for start in range(0, len(matrix), chunk):
        out[start : start + chunk] = read_rows(matrix, start, start + chunk)
    return out


class MatrixWriter:
    """Write a search matrix row block by row block into memory-mapped files.

    Parameters
    ----------
    directory : Path
    name : str
        File stem (``vectors`` → ``vectors.npy``).
    rows, dim : int
    storage : {"float32", "int8"}
    bound : np.ndarray [shape=(dim,)], optional
        The largest absolute value each dimension can hold (int8 only; default 1).

    Blocks must be written in row order. With int8, the first :data:`SCALE_SAMPLE_ROWS` rows are held
    (at most 65,536 rows) until the scales are known.
    """

    def __init__(
        self, directory: Path, name: str, rows: int, dim: int, storage: str, *, bound: np.ndarray | None = None
    ) -> None:
        if storage not in STORAGES:
            raise ValueError(f"unknown vector storage {storage!r}; expected one of {', '.join(STORAGES)}")
        self.directory, self.name, self.rows, self.dim, self.storage = Path(directory), name, rows, dim, storage
        self._dtype = np.dtype({"float32": np.float32, "float16": np.float16, "int8": np.int8}[storage])
        # Plain writes after the header, not a memory map: written pages go to the page cache
        # without being counted in this process's resident memory.
        path = self.directory / f"{name}.npy"
        header = open_memmap(path, mode="w+", dtype=self._dtype, shape=(rows, dim))
        start = int(header.offset)
        del header
        self._file = open(path, "r+b")  # noqa: SIM115 -- closed in close()
        self._file.seek(start)
        self._bound = np.ones(dim, dtype=np.float32) if bound is None else np.asarray(bound, dtype=np.float32)
        self._held: list[np.ndarray] = []
        self._held_rows = 0
        self._row = 0
        self.scales: np.ndarray | None = None
        self.clipped = 0

    def write(self, block: np.ndarray) -> None:
        """Append rows [shape=(m, dim), float32]."""
        block = np.asarray(block, dtype=np.float32).reshape(-1, self.dim)
        if self.storage != "int8":
            self._put(block)
            return
        if self.scales is None:
            self._held.append(block)
            self._held_rows += len(block)
            if self._held_rows >= SCALE_SAMPLE_ROWS:
                self._release()
            return
        self._put(block)

    def _release(self) -> None:
        held = np.concatenate(self._held) if self._held else np.zeros((0, self.dim), np.float32)
        self._held, self._held_rows = [], 0
        peak = np.abs(held).max(axis=0) if len(held) else np.zeros(self.dim, np.float32)
        top = np.minimum(self._bound, SCALE_MARGIN * peak)
        self.scales = np.where(top > 0, top / 127.0, 1.0).astype(np.float32)
        self._put(held)

    def _put(self, block: np.ndarray) -> None:
        end = self._row + len(block)
        if end > self.rows:
            raise ValueError(f"{self.name}: expected {self.rows} rows, found at least {end}")
        if self.storage != "int8":
            self._file.write(np.ascontiguousarray(block, dtype=self._dtype).tobytes())
        else:
            assert self.scales is not None
            q = np.rint(block / self.scales)
            self.clipped += int(np.count_nonzero(np.abs(q) > 127))
            self._file.write(np.clip(q, -127, 127).astype(np.int8).tobytes())
        self._row = end

    def close(self) -> None:
        """Flush everything; every row must have been written."""
        if self.storage == "int8" and self.scales is None:
            self._release()
        if self._row != self.rows:
            raise ValueError(f"{self.name}: expected {self.rows} rows, found {self._row}")
        self._file.close()
        if self.storage == "int8":
            assert self.scales is not None
            np.save(self.directory / f"{self.name}.scales.npy", self.scales)
            if self.clipped:
                log.info("%s: %d values clipped to the int8 range", self.name, self.clipped)


def open_matrix(directory: Path, name: str, *, random_access: bool = False) -> SearchMatrix:
    """Memory-map a matrix written by :class:`MatrixWriter` (float32/float16 array or :class:`Int8Matrix`).

    With ``random_access`` (a served index, whose queries re-score scattered rows), the kernel is
    told not to read ahead around each row it pages in (:func:`advise_random`).
    """
    data = np.load(Path(directory) / f"{name}.npy", mmap_mode="r")
    if random_access:
        advise_random(data)
    scales = Path(directory) / f"{name}.scales.npy"
    if data.dtype == np.int8:
        return Int8Matrix(data, np.load(scales))
    return data


def storage_of(matrix: SearchMatrix) -> str:
    return "int8" if isinstance(matrix, Int8Matrix) else str(matrix.dtype)
