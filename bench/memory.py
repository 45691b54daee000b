"""Memory per open promise: the worker's in-memory state vs the same records in RocksDB.

Each measurement runs in a fresh child process (``python -m bench.memory ...``) so that its RSS
baseline is clean: RSS (VmRSS) after the imports and a gc, then again after building N open
promises; the difference divided by N is bytes per open promise. It includes CPython's
allocator overhead and free space left in its arenas; it does not include anything the worker
keeps per event rather than per promise (up to 100,000 recent event ids per partition).

book         a PromiseBook (streams/core/promises.py) with N open promises made as the worker
             makes them (fresh strings for ids and team, shared enum strings for kind,
             audience and channel), after take_dirty() as the worker leaves it.
book+table   the same plus what the worker's in-memory Faust table holds for each promise: the
             dict it writes, {"partition": p, "record": record.to_dict()} (store="memory://").
             This is what one worker holds per open promise (the changelog is on the broker).
tracemalloc  bytes traced by tracemalloc for book+table (Python objects only, no allocator slack),
             over at most 100,000 promises (tracing is slow and doubles memory), per promise.
rocksdict    the table's records as RocksDB would hold them (rocksdict Rdict, raw bytes mode:
             key = promise id, value = the JSON the changelog carries), written in batches of
             10,000 then flushed: RSS delta (memtables, block cache, index) and bytes on disk.
             With a RocksDB table store the PromiseBook itself would still be in memory: the
             store replaces the "table" part of book+table, not the book.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.proc import rss_mb

ROOT = Path(__file__).resolve().parents[1]
TEAMS = ("billing", "support", "logistics", "field-service")
KINDS = ("callback", "delivery", "resolution", "refund", "visit", "other")
CHANNELS = ("chat", "email", "phone", "social")
TRACED_MAX = 100_000


def _records(count: int):
    from streams.core.promises import PromiseRecord

    rng = random.Random(7)
    base = time.time() + 86_400
    for i in range(count):
        team = TEAMS[i % 4]
        yield PromiseRecord(
            promise_id=f"prm-{i:012x}", case_id=f"case-{i:012x}",
            team="".join(team),  # a fresh string per record, as JSON decoding gives
            kind=KINDS[i % 6], audience="external", channel=CHANNELS[i % 4],
            due_at=base + rng.uniform(0, 86_400))


def _book(count: int, with_table: bool, traced: bool) -> dict:
    from streams.core.promises import PromiseBook

    if traced:
        import tracemalloc
        tracemalloc.start()
    gc.collect()
    before = rss_mb()
    started = time.perf_counter()
    book = PromiseBook()
    table: dict = {}
    for record in _records(count):
        book.make(record, known_at=time.time())
        if with_table:
            table[record.promise_id] = {"partition": 0, "record": record.to_dict()}
        if len(book._dirty) >= 1000:
            book.take_dirty()
    book.take_dirty()
    seconds = time.perf_counter() - started
    gc.collect()
    result = {"count": count, "rss_delta_mb": rss_mb() - before, "seconds": seconds, "open": len(book)}
    if traced:
        import tracemalloc
        result["traced_bytes"] = tracemalloc.get_traced_memory()[0]
    return result


def _rocks(count: int, directory: Path) -> dict:
    from rocksdict import Options, Rdict, WriteBatch

    gc.collect()
    before = rss_mb()
    started = time.perf_counter()
    db = Rdict(str(directory), Options(raw_mode=True))
    batch = WriteBatch(raw_mode=True)
    for n, record in enumerate(_records(count), 1):
        value = json.dumps({"partition": 0, "record": record.to_dict()}).encode()
        batch.put(record.promise_id.encode(), value)
        if n % 10_000 == 0:
            db.write(batch)
            batch = WriteBatch(raw_mode=True)
    db.write(batch)
    db.flush()
    seconds = time.perf_counter() - started
    gc.collect()
    rss_delta = rss_mb() - before
    keys = [f"prm-{random.randrange(count):012x}".encode() for _ in range(10_000)]
    t0 = time.perf_counter()
    for key in keys:
        db[key]
    get_us = (time.perf_counter() - t0) / len(keys) * 1e6
    db.close()
    disk = sum(f.stat().st_size for f in directory.rglob("*") if f.is_file())
    return {"count": count, "rss_delta_mb": rss_delta, "disk_bytes": disk, "seconds": seconds,
            "get_us": get_us}


def _child(args: list[str], timeout: float) -> dict:
    out = subprocess.run([sys.executable, "-m", "bench.memory", *args], cwd=str(ROOT),
                         capture_output=True, text=True, timeout=timeout)
    if out.returncode != 0:
        raise RuntimeError(f"bench.memory {' '.join(args)} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def measure(count: int, timeout: float = 900.0) -> dict:
    """All four measurements for ``count`` open promises; each in its own process."""
    results = {"book": _child(["book", str(count)], timeout),
               "book+table": _child(["book+table", str(count)], timeout),
               "tracemalloc": _child(["tracemalloc", str(min(count, TRACED_MAX))], timeout)}
    try:
        import rocksdict  # noqa: F401
    except ImportError:
        results["rocksdict"] = {"missing": "rocksdict is not installed: pip install -e '.[bench]'"}
        return results
    directory = Path(tempfile.mkdtemp(prefix="bench-rocks-"))
    try:
        results["rocksdict"] = _child(["rocksdict", str(count), str(directory / "db")], timeout)
    finally:
        shutil.rmtree(directory, ignore_errors=True)
    return results


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.memory", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("what", choices=["book", "book+table", "tracemalloc", "rocksdict"])
    parser.add_argument("count", type=int)
    parser.add_argument("directory", nargs="?", type=Path)
    args = parser.parse_args(argv)
    if args.what == "rocksdict":
        result = _rocks(args.count, args.directory)
    else:
        result = _book(args.count, with_table=args.what != "book", traced=args.what == "tracemalloc")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
