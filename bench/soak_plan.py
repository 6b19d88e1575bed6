"""What a soak run will do, decided up front from --seed: the recordings, the webhooks that announce
them (with their duplicates), the CDN fault of each file and the timeline of process-level faults.

Only the timing of the run is left to chance; the sequence of events and faults is the seed's.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

from bench.soak_cdn import REPLACING, Recording

MiB = 1 << 20
# Per-file CDN faults. A kind that finds a product bug whenever it fires is kept out of the default set
# (OFF_BY_DEFAULT) until the product handles it, and stays selectable so a run can show the gap; every
# kind the first soak found that way (a late 404, a splice, a cut-short body without a length, a killed
# local-disk writer, a lost CreateMultipartUpload reply) is handled now and runs by default.
FILE_FAULTS = ("cdn_drop", "cdn_reset", "cdn_truncate", "cdn_badrange", "cdn_novalidator", "cdn_replace",
               "cdn_replace_ignore_ifrange", "cdn_fail", "cdn_slow", "cdn_gone", "cdn_late404", "cdn_splice",
               "cdn_truncate_eof")
ACTIONS = ("worker_kill", "worker_kill_local", "broker_restart", "db_drop", "cdn_storm", "s3_storm", "azure_storm",
           "gcs_storm")
PROXY_FAULTS = ("s3_faults", "azure_faults", "gcs_faults")  # random 503/drop/drop_after/slow per request
TARGETED = ("s3_lost_create_reply",)  # 30 % of S3 CreateMultipartUpload replies lost after moto applied them
DUPLICATES = ("dup_same", "dup_reserialised", "dup_overlap")
ALL = FILE_FAULTS + ACTIONS + PROXY_FAULTS + TARGETED + DUPLICATES
OFF_BY_DEFAULT: tuple[str, ...] = ()
DEFAULT = tuple(k for k in ALL if k not in OFF_BY_DEFAULT)
STORM_TARGETS = {"cdn_storm": "cdn", "s3_storm": "s3", "azure_storm": "azure", "gcs_storm": "gcs"}


def parse_faults(spec: str) -> tuple[str, ...]:
    """'default', 'all', 'none', names, '+name', '-name', comma-separated, applied left to right:
    'default,+cdn_late404' or 'all,-cdn_splice' or 'none,+worker_kill'. Raises ValueError naming the
    unknown names and listing the known ones."""
    chosen: list[str] = []
    unknown = []
    for token in (t.strip() for t in spec.split(",") if t.strip()):
        name, remove = token.lstrip("+-"), token.startswith("-")
        group = {"default": DEFAULT, "all": ALL, "none": ()}.get(name, (name,))
        for kind in group:
            if kind not in ALL:
                unknown.append(kind)
            elif remove and kind in chosen:
                chosen.remove(kind)
            elif not remove and kind not in chosen:
                chosen.append(kind)
    if unknown:
        raise ValueError(f"--faults: unknown {', '.join(unknown)}; known: default, all, none, {', '.join(ALL)}")
    return tuple(chosen)


@dataclass
class PlannedEvent:
    index: int
    webhook_type: str
    meeting_id: str
    session_id: str
    participant_id: str | None
    kind: str | None
    files: list[Recording]
    duplicates: list[tuple[str, float]] = field(default_factory=list)  # (dup kind, seconds after the original)
    state_event: bool = False  # a recording-started/-starting body announcing no file (answered 200)


@dataclass(frozen=True)
class Action:
    at: float  # seconds after the start of the run
    kind: str
    seconds: float = 0.0  # storms and database locks: how long


def _hex(rng: random.Random, n: int = 24) -> str:
    return "".join(rng.choice("0123456789abcdef") for _ in range(n))


def _size(rng: random.Random, max_mib: float) -> int:
    # 40 % small, 35 % medium, 25 % large (over S3's 5 MiB part and Azure/GCS's 4 MiB part: multipart)
    low, high = rng.choices([(64 << 10, MiB), (MiB, 5 * MiB), (5 * MiB, max_mib * MiB)], [40, 35, 25])[0]
    high = max(low + 1, min(high, int(max_mib * MiB)))
    return int(low * (high / low) ** rng.random())


def _recording(rng: random.Random, path: str, faults: tuple[str, ...], max_mib: float) -> Recording:
    size = _size(rng, max_mib)
    chosen: tuple[str, ...] = ()
    file_faults = [f for f in FILE_FAULTS if f in faults]
    if "cdn_gone" in file_faults and rng.random() < 0.04:
        chosen = ("cdn_gone",)
    elif rng.random() < 0.45 and (pool := [f for f in file_faults if f != "cdn_gone"]):
        chosen = (rng.choice(pool),)
        extras = [f for f in ("cdn_slow", "cdn_fail") if f in file_faults and f not in chosen]
        if extras and rng.random() < 0.15:
            chosen += (rng.choice(extras),)
    sizes: tuple[int, ...] = (size,)
    if any(f in REPLACING for f in chosen):
        same = "cdn_splice" in chosen or rng.random() < 0.5  # the same size is the dangerous replacement
        sizes = (size, size if same else max(1, int(size * rng.uniform(0.8, 1.2))))
    return Recording(path=path, sizes=sizes, faults=chosen, cut=rng.uniform(0.1, 0.9), late_s=rng.uniform(2, 5))


def plan_events(seed: int, count: int, faults: tuple[str, ...], max_mib: float = 12.0) -> list[PlannedEvent]:
    """`count` webhooks announcing recordings (more than a run can send; it takes them in order)."""
    rng = random.Random(seed)
    events: list[PlannedEvent] = []
    for i in range(count):
        meeting, session = f"soak{seed}-{_hex(rng, 4)}-{i}", _hex(rng)
        webhook_type = rng.choices(["recording-stopped", "participant-recording-stopped",
                                    "participant-track-recording-stopped"], [45, 30, 25])[0]
        participant = kind = None
        if webhook_type == "recording-stopped":
            paths = [f"encoded/videos/{_hex(rng)}.mp4"]
        else:
            participant = f"p-{_hex(rng, 8)}"
            kind = rng.choice(["audio", "video", "screen_audio", "screen_video"]) \
                if webhook_type == "participant-track-recording-stopped" else None
            folder = f"individual-recordings/{session}/{participant}" + (f"/{kind}" if kind else "")
            paths = [f"{folder}/{_hex(rng)}.webm" for _ in range(rng.randint(1, 3))]
        files = [_recording(rng, p, faults, max_mib) for p in paths]
        event = PlannedEvent(i, webhook_type, meeting, session, participant, kind, files,
                             state_event=rng.random() < 0.2)
        if "dup_same" in faults and rng.random() < 0.25:
            event.duplicates.append(("dup_same", rng.choice([0.0, rng.uniform(1, 15)])))
        if "dup_reserialised" in faults and rng.random() < 0.15:
            event.duplicates.append(("dup_reserialised", rng.uniform(0, 15)))
        if "dup_overlap" in faults and len(files) > 1 and rng.random() < 0.3:
            event.duplicates.append(("dup_overlap", rng.uniform(0, 10)))
        events.append(event)
    return events


def plan_actions(seed: int, duration: float, faults: tuple[str, ...], intensity: float = 1.0) -> list[Action]:
    """Process-level faults at seeded moments between 10 % and 85 % of the run (the rest of the run
    and the drain give their recovery time); `intensity` multiplies how many of each kind."""
    rng = random.Random(seed * 7919 + 1)
    per = {"worker_kill": 40, "worker_kill_local": 40, "broker_restart": 90, "db_drop": 30, "cdn_storm": 45,
           "s3_storm": 60, "azure_storm": 60, "gcs_storm": 60}  # one every this many seconds, at least one
    actions = []
    for kind in ACTIONS:
        if kind not in faults:
            continue
        for _ in range(max(1, round(duration * intensity / per[kind]))):
            seconds = rng.uniform(1.5, 3.0) if kind in STORM_TARGETS or kind == "db_drop" else 0.0
            actions.append(Action(round(rng.uniform(0.1, 0.85) * duration, 2), kind, round(seconds, 2)))
    return sorted(actions, key=lambda a: a.at)
