"""What a reconcile run found, per room and per recording kind, as `archiver reconcile` prints it."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any

from archiver.maintenance.reconcile_rooms import Discovery
from archiver.observability.metrics import RECONCILE_FINDS


@dataclass
class KindCounts:
    """Counts of one recording kind (in one room, or summed). Files, except where it says recordings.

    listed: files VideoSDK lists (of recordings that could be read); already_archived: of which the
    ledger had, with a copy job for every destination that wants them (whatever the job's state);
    newly_queued: files given a copy job they lacked (new files, or a destination added since);
    failed: recordings VideoSDK listed that could not be read, plus listings that failed;
    not_ready: recordings without a file yet (a merge or transcript still running), looked at again
    next run; mismatches: succeeded copies whose size differs from VideoSDK's (new_mismatches: of
    which flagged by this run)."""

    recordings: int = 0
    listed: int = 0
    already_archived: int = 0
    newly_queued: int = 0
    failed: int = 0
    not_ready: int = 0
    new_files: int = 0
    jobs_created: int = 0
    mismatches: int = 0
    new_mismatches: int = 0

    def add(self, other: KindCounts) -> None:
        for f in fields(self):
            setattr(self, f.name, getattr(self, f.name) + getattr(other, f.name))


@dataclass
class RoomReport:
    room: str
    found_by: list[str] = field(default_factory=list)  # ledger, config, option, rooms-api
    kinds: dict[str, KindCounts] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)  # recording kind -> why its listing failed
    new: list[str] = field(default_factory=list)  # "kind:recording id" of recordings with new files

    def counts(self, kind: str) -> KindCounts:
        return self.kinds.setdefault(kind, KindCounts())

    @property
    def error(self) -> str | None:
        return "; ".join(f"{kind}: {error}" for kind, error in self.errors.items()) or None

    def total(self, name: str) -> int:
        return sum(getattr(c, name) for c in self.kinds.values())

    def to_json(self) -> dict[str, Any]:
        return {"room": self.room, "found_by": self.found_by, "error": self.error, "errors": self.errors,
                "new": self.new, **{name: self.total(name) for name in ("recordings", "listed", "new_files",
                                                                        "jobs_created", "mismatches", "failed")},
                "kinds": {kind: asdict(c) for kind, c in self.kinds.items()}}


@dataclass
class ReconcileReport:
    rooms: list[RoomReport]
    kinds: list[str]
    discovery: Discovery | None = None
    error: str | None = None  # what stopped the run (authentication): every further call would repeat it

    def by_kind(self) -> dict[str, KindCounts]:
        totals = {kind: KindCounts() for kind in self.kinds}
        for room in self.rooms:
            for kind, counts in room.kinds.items():
                totals.setdefault(kind, KindCounts()).add(counts)
        return totals

    def total(self, name: str) -> int:
        return sum(room.total(name) for room in self.rooms)

    @property
    def failed_rooms(self) -> int:
        return sum(bool(room.errors) for room in self.rooms)

    @property
    def failed(self) -> int:
        return self.total("failed") + bool(self.discovery and self.discovery.error) + bool(self.error)

    @property
    def found_anything(self) -> bool:
        return bool(self.total("new_files") or self.total("jobs_created") or self.total("mismatches") or self.failed)

    def to_json(self) -> dict[str, Any]:
        return {"error": self.error, "rooms_scanned": len(self.rooms),
                "rooms_discovered": sum("rooms-api" in r.found_by for r in self.rooms),
                "recordings_seen": self.total("recordings"), "files_listed": self.total("listed"),
                "files_new": self.total("new_files"), "jobs_created": self.total("jobs_created"),
                "mismatches": self.total("mismatches"), "failed": self.failed, "rooms_failed": self.failed_rooms,
                "discovery": self.discovery.to_json() if self.discovery else None,
                "kinds": {kind: asdict(c) for kind, c in self.by_kind().items()},
                "rooms": [r.to_json() for r in self.rooms]}

    def summary(self) -> str:
        found = self.discovery
        rooms = f"rooms scanned {len(self.rooms)}"
        if found is not None:
            rooms += (f" ({sum('rooms-api' in r.found_by for r in self.rooms)} listed by /v2/rooms"
                      f"{', list capped' if found.capped else ''}{', room list failed' if found.error else ''})")
        return (f"{rooms}, files listed {self.total('listed')}, new {self.total('new_files')}, "
                f"jobs created {self.total('jobs_created')}, mismatches {self.total('mismatches')}, "
                f"failed {self.failed}" + (f"; stopped: {self.error}" if self.error else ""))


def count_finds(report: ReconcileReport) -> None:
    """archiver_reconcile_finds_total{kind}: files no webhook had announced, per recording kind."""
    for kind, counts in report.by_kind().items():
        if counts.new_files:
            RECONCILE_FINDS.labels(kind=kind).inc(counts.new_files)
