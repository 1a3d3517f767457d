#!/usr/bin/env python3
"""Where crm-events-sink's CPU goes, from `perf script` output.

    perf script -i perf.data -F comm,tid,ip,sym,dso | \
        bench/perf_breakdown.py [--events N] [--cpu-seconds S]

Reads samples with call chains (perf record --call-graph dwarf or -g) and puts
each sample in one category: the first category (in the order of FRAME_RULES)
whose pattern matches any frame of the sample's call chain (kernel and libc
frames match nothing, so a page fault or a malloc counts for the code that
caused it). Samples of librdkafka's
own threads and of CAF's scheduler threads are counted by thread. Prints a
table: category, samples, % of the sink's CPU and, with --events and
--cpu-seconds, microseconds per event. Standard library only.
"""
import argparse
import re
import sys
from collections import Counter

# (category, pattern on the symbol), checked in this order for every frame.
FRAME_RULES = [
    ("JSON validation (check_record)",
     re.compile(r"ces::check_record|ces::check_json|ces::\(anonymous namespace\)::parser|validate")),
    ("COPY encoding (copy_text)",
     re.compile(r"copy_text::|headers_json|append_journal_row")),
    ("libpq COPY send (send_rows/stream_to)",
     re.compile(r"send_rows|stream_to|PQputCopy|try_copy|write_raw_line")),
    ("freeing batches (destructors)",
     re.compile(r"~pending|~checked_record|~kafka_record|~batch|vector<ces::checked_record[^>]*>::~vector")),
    ("Kafka poll + copy out of librdkafka",
     re.compile(r"kafka_source::|copy_message|RdKafka::|rd_kafka_")),
    ("SQL round trips: offsets, savepoint, commit (libpq/libpqxx)",
     re.compile(r"pqxx::|^PQ|pqWait|pqSocket|pqFlush|pqsecure|pqReadData|pqParseInput")),
    ("persister bookkeeping (journal_writer::write)",
     re.compile(r"journal_writer::impl::write|ces::persister\(|ces::\(anonymous namespace\)::drain")),
    ("consumer bookkeeping (batching, acks, commits)",
     re.compile(r"ces::consumer|send_batch|count_by_topic|on_ack|ces::\(anonymous namespace\)::poll")),
    ("metrics / logging",
     re.compile(r"prometheus|spdlog|fmt::")),
    ("CAF messaging and scheduling",
     re.compile(r"caf::")),
]
LIBPQ_DSO = re.compile(r"libpq\.so|libpqxx")
RDKAFKA_DSO = re.compile(r"librdkafka")


def classify(comm, frames):
    if comm.startswith("rdk:"):
        return "librdkafka background threads (fetch, protocol)"
    if comm.startswith("civetweb"):
        return "metrics / logging"
    for cat, pat in FRAME_RULES:
        if any(pat.search(sym) for sym, _ in frames):
            return cat
    for _, dso in frames:
        if LIBPQ_DSO.search(dso):
            return "SQL round trips: offsets, savepoint, commit (libpq/libpqxx)"
        if RDKAFKA_DSO.search(dso):
            return "Kafka poll + copy out of librdkafka"
    if comm.startswith("caf."):
        return "CAF messaging and scheduling"
    leaf_dso = frames[0][1] if frames else ""
    if "kernel" in leaf_dso:
        return "other: kernel"
    return "other: " + (leaf_dso.rsplit("/", 1)[-1] or "unknown")


def samples(stream):
    """Yields (comm, [(sym, dso), ...]) per sample of `perf script`."""
    head = None
    frames = []
    frame_re = re.compile(r"^\s+[0-9a-f]+\s+(.*?)\s+\((.*)\)\s*$")
    for line in stream:
        line = line.rstrip("\n")
        if not line.strip():
            if head is not None:
                yield head, frames
            head, frames = None, []
            continue
        if head is None and not line[0].isspace():
            # "comm  tid" ; comm may contain spaces: the tid is the last field.
            parts = line.split()
            head = " ".join(parts[:-1]) if len(parts) > 1 else parts[0]
            continue
        m = frame_re.match(line)
        if m:
            sym = re.sub(r"\+0x[0-9a-f]+$", "", m.group(1))
            frames.append((sym, m.group(2)))
    if head is not None:
        yield head, frames


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--events", type=float, default=0)
    ap.add_argument("--cpu-seconds", type=float, default=0)
    ap.add_argument("--top", type=int, default=0,
                    help="also list the N hottest leaf symbols")
    a = ap.parse_args()

    cats = Counter()
    threads = Counter()
    leaves = Counter()
    total = 0
    for comm, frames in samples(sys.stdin):
        total += 1
        cats[classify(comm, frames)] += 1
        threads[comm] += 1
        if frames:
            leaves[frames[0][0]] += 1
    if total == 0:
        print("perf_breakdown: no samples", file=sys.stderr)
        return 1
    per_event = a.events > 0 and a.cpu_seconds > 0
    print(f"  {'where the sink CPU goes':<62} {'samples':>8} {'% CPU':>7}"
          + (f" {'us/event':>9}" if per_event else ""))
    for cat, n in cats.most_common():
        line = f"  {cat:<62} {n:>8} {100.0 * n / total:>6.1f}%"
        if per_event:
            line += f" {a.cpu_seconds * n / total * 1e6 / a.events:>9.2f}"
        print(line)
    line = f"  {'total':<62} {total:>8} {100.0:>6.1f}%"
    if per_event:
        line += f" {a.cpu_seconds * 1e6 / a.events:>9.2f}"
    print(line)
    print("  by thread: " + ", ".join(
        f"{t} {100.0 * n / total:.1f}%" for t, n in threads.most_common(8)))
    if a.top:
        print("  hottest leaf symbols:")
        for sym, n in leaves.most_common(a.top):
            print(f"    {100.0 * n / total:5.1f}%  {sym[:110]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
