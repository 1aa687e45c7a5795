"""Silence in both places: the Alertmanager silences that mirror an incident's silence.

`matcher_sets` is pure: from the label sets of an incident's firing members and of every other incident's
member alerts it computes equality matchers, each set with `alertname`, that cover the members and that no other
alert satisfies. Matching follows Alertmanager's rule that a missing label has the empty value, so `job=""`
says "no job label" and can exclude another alert that has one. Sets are as wide as is safe: the labels a group
of members shares, split by one label at a time while other alerts would still match, down to one member's own
labels (plus `name=""` for labels it lacks) as the last resort. A member whose label set another incident's alert
carries too cannot be told apart by any matcher set: it is reported, never silenced.

`Silencer` runs it around the lifecycle actions, never inside their transaction: the local silence is
committed first, then Alertmanager is asked (one peer; the next if it fails; each call bounded by
`alertmanager.timeout`), then the outcome (ids, or why it failed) is written in a second short transaction with
its timeline event. Only silences we made (kept in `alertmanager_silences`) are ever expired: when the incident is
unsilenced or resolved by any path, when its silence here ends sooner, or when a newer silence replaces them. The
action expires at once; `sweep`, run every reconcile interval, catches the paths without an action (webhooks,
stale timers, reconciliation) and retries expiries Alertmanager did not confirm.
"""

from __future__ import annotations

import asyncio
import logging
import re
import uuid
from collections.abc import Coroutine, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from .alertmanager_api import AlertmanagerAPI, AlertmanagerError, Matcher
from .metrics import Metrics
from .model import Incident, IncidentStatus, SilenceToExpire
from .store import Store, StoreUnavailable

log = logging.getLogger(__name__)

Labels = Mapping[str, str]
# A matcher set: sorted (name, value) equality pairs; the value "" matches an alert without that label.
MatcherSet = tuple[tuple[str, str], ...]

ALERTNAME = "alertname"
# Label names Alertmanager 0.25 takes in a matcher; others (Grafana allows more) cannot narrow a silence.
_MATCHABLE = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")
ACTOR = "receiver"  # the actor of what the sweep does
MAX_FIRING = 1000  # firing members read to build the matchers (the shared labels cover the rest in practice)
MAX_OTHERS = 20_000  # other incidents' alerts read to prove the matchers safe; more: no silence is made
MAX_SETS = 50  # Alertmanager silences one incident's silence may need; more: none is made
EXPIRE_BATCH = 50  # silences expired per pass
_OFF_LOOP_WORK = 200_000  # firing x others above which matcher_sets runs in a worker thread


def matches(matchers: Iterable[tuple[str, str]], labels: Labels) -> bool:
    """Whether Alertmanager's equality matchers select an alert with these labels (missing label = "")."""
    return all(labels.get(name, "") == value for name, value in matchers)


@dataclass(frozen=True)
class MatcherPlan:
    """What to silence: `sets` (each safe on its own), and the firing members no set can cover safely."""

    sets: tuple[MatcherSet, ...]
    unsafe: tuple[Labels, ...] = field(default=())


def matcher_sets(firing: Sequence[Labels], others: Iterable[Labels]) -> MatcherPlan:
    """Matcher sets covering every firing member (but the `unsafe` ones) that select none of `others`.

    Every set carries `alertname` (its members' value). Fewer, wider sets come first: for each alertname, the
    labels all its members share; if another alert would match, the members are split by the label that divides
    them into the fewest groups and each group tried again; a single member is narrowed with its own labels
    (and absent-label matchers) until no other alert matches. Sets implied by a wider one are dropped.
    """
    others_list = [dict(o) for o in others]
    by_name: dict[str, list[Labels]] = {}
    for labels in firing:
        by_name.setdefault(labels.get(ALERTNAME, ""), []).append(labels)
    sets: list[MatcherSet] = []
    unsafe: list[Labels] = []
    for name in sorted(by_name):
        group = by_name[name]
        base = {ALERTNAME: name}
        _cover(group, base, [o for o in others_list if matches(base.items(), o)], sets, unsafe)
    return MatcherPlan(_widest(sets), tuple(unsafe))


def _shared(group: Sequence[Labels], base: Mapping[str, str]) -> dict[str, str]:
    """`base` and the labels (name, value) every member of `group` carries."""
    first, rest = group[0], group[1:]
    shared = dict(base)
    for k, v in first.items():
        if k not in shared and _MATCHABLE.fullmatch(k) and all(m.get(k, "") == v for m in rest):
            shared[k] = v
    return shared


def _cover(
    group: Sequence[Labels],
    base: Mapping[str, str],
    conflicts: list[dict[str, str]],
    sets: list[MatcherSet],
    unsafe: list[Labels],
) -> None:
    """Append matcher sets covering `group` (whose members all satisfy `base`) that match none of `conflicts`
    (the other alerts `base` matches); members that cannot be separated go to `unsafe`."""
    chosen = _shared(group, base)
    conflicts = [o for o in conflicts if matches(chosen.items(), o)]
    if conflicts:
        # labels the whole group lacks may still tell it apart (e.g. no `job` while the others have one)
        narrowed = _narrow(group, chosen, conflicts)
        if narrowed is not None:
            sets.append(tuple(sorted(narrowed.items())))
            return
    else:
        sets.append(tuple(sorted(chosen.items())))
        return
    key = _split_key(group, chosen) if len(group) > 1 else None
    if key is None:  # one member, or members Alertmanager cannot tell apart (`a=""` and no `a`)
        unsafe.extend(group)
        return
    parts: dict[str, list[Labels]] = {}
    for m in group:
        parts.setdefault(m.get(key, ""), []).append(m)
    for value in sorted(parts):
        _cover(parts[value], {**chosen, key: value}, conflicts, sets, unsafe)


def _split_key(group: Sequence[Labels], chosen: Mapping[str, str]) -> str | None:
    """The label that splits `group` into the fewest parts (at least two), by name on a tie; None if none does."""
    keys = sorted({k for m in group for k in m if k not in chosen and _MATCHABLE.fullmatch(k)})
    counts = [(n, k) for k in keys if (n := len({m.get(k, "") for m in group})) > 1]
    return min(counts)[1] if counts else None


def _narrow(group: Sequence[Labels], chosen: dict[str, str], conflicts: list[dict[str, str]]) -> dict[str, str] | None:
    """`chosen` plus pairs every member of `group` satisfies, added greedily (the one excluding most of the
    remaining conflicts first; present labels before absent ones) until no conflict matches; None when the
    remaining conflicts cannot be excluded by any pair the whole group satisfies."""
    chosen = dict(chosen)
    remaining = conflicts
    while remaining:
        names = {k for o in remaining for k in o} | {k for m in group for k in m}
        best: tuple[int, bool, str, str] | None = None
        for k in sorted(names - chosen.keys()):
            if not _MATCHABLE.fullmatch(k):
                continue
            v = group[0].get(k, "")
            if any(m.get(k, "") != v for m in group):
                continue
            excluded = sum(1 for o in remaining if o.get(k, "") != v)
            if excluded and (best is None or (-excluded, v == "", k) < (-best[0], best[1], best[2])):
                best = (excluded, v == "", k, v)
        if best is None:
            return None
        chosen[best[2]] = best[3]
        remaining = [o for o in remaining if o.get(best[2], "") == best[3]]
    return chosen


def _widest(sets: Sequence[MatcherSet]) -> tuple[MatcherSet, ...]:
    """The sets without duplicates and without any set a smaller one implies (a subset of pairs matches more)."""
    unique = sorted(set(sets), key=lambda s: (len(s), s))
    kept: list[MatcherSet] = []
    for s in unique:
        if not any(set(k) <= set(s) for k in kept):
            kept.append(s)
    return tuple(kept)


def describe(matcher_set: Iterable[tuple[str, str]]) -> str:
    """A matcher set as Alertmanager writes it: {alertname="X", job=""}."""
    return "{" + ", ".join(f'{k}="{_escape(v)}"' for k, v in matcher_set) + "}"


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


class Silencer:
    """Makes and ends the Alertmanager silences that mirror incidents' silences (see the module docstring)."""

    def __init__(self, api: AlertmanagerAPI, store: Store, metrics: Metrics, *, external_url: str = ""):
        self.api = api
        self.store = store
        self.metrics = metrics
        self.external_url = external_url
        self._good_peer = 0  # the peer that answered last goes first
        self._tasks: set[asyncio.Task[Any]] = set()

    async def run(self, work: Coroutine[Any, Any, Any]) -> None:
        """Run `work` to its end even if the request that asked for it is cancelled (a client that went away):
        the local silence is committed, so its outcome must still be recorded."""
        task = asyncio.create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        await asyncio.shield(task)

    async def close(self) -> None:
        """Wait for work still running (each call is bounded by the timeout)."""
        if self._tasks:
            await asyncio.wait(set(self._tasks))

    def _peers(self, first: str | None = None) -> list[str]:
        peers = list(self.api.peers)
        start = peers.index(first) if first in peers else self._good_peer % len(peers)
        return peers[start:] + peers[:start]

    def comment(self, incident: Incident) -> str:
        link = (
            f"{self.external_url}/incidents/{incident.id}" if self.external_url else f"receiver incident {incident.id}"
        )
        return f"{incident.silence_reason or 'silenced'} (silenced in receiver: {link})"

    async def after_action(self, action: str, after: Incident, actor: str, now: datetime) -> None:
        """What a committed lifecycle action means in Alertmanager: a silence (new, extended or shortened) makes
        silences; unsilencing or resolving expires ours. Failures are recorded or left to the sweep, never raised:
        the action itself is done."""
        try:
            if action == "silence":
                await self.silence(after, actor, now)
            elif action in ("unsilence", "resolve"):
                await self.expire(now, incident_id=after.id, actor=actor)
        except StoreUnavailable as e:
            log.warning(
                "Alertmanager silences of incident %s after %s: database unavailable (%s); the sweep retries",
                after.id,
                action,
                e,
            )
        except Exception:  # the action is committed: answering 500 for it would say it failed
            log.exception("Alertmanager silences of incident %s after %s failed", after.id, action)

    # --- silence ---------------------------------------------------------------------------------

    async def silence(self, incident: Incident, actor: str, now: datetime) -> None:
        """After the incident's silence is committed: silence its firing alerts in Alertmanager until the same
        end, keep the ids, say on the timeline what was done or why it failed, and expire what it replaces."""
        if incident.status != IncidentStatus.SILENCED or incident.silenced_until is None:
            return
        until = incident.silenced_until
        try:
            firing, others = await self.store.silence_label_sets(
                incident.id, max_firing=MAX_FIRING, max_others=MAX_OTHERS
            )
        except StoreUnavailable as e:
            log.warning("Alertmanager silence for incident %s: database unavailable (%s)", incident.id, e)
            self.metrics.alertmanager_silences("create_failed")
            return
        failure: str | None = None
        plan = MatcherPlan(())
        if not firing:
            failure = "no alert of the incident fires now: nothing to silence in Alertmanager"
        elif len(others) > MAX_OTHERS:
            failure = (
                f"more than {MAX_OTHERS:,} alerts of other incidents share its alert names: too many to "
                "prove a silence would not match them"
            )
        else:
            if len(firing) * max(len(others), 1) > _OFF_LOOP_WORK:
                plan = await asyncio.to_thread(matcher_sets, firing, others)
            else:
                plan = matcher_sets(firing, others)
            if not plan.sets:
                failure = "every firing alert has the same labels as an alert of another incident"
            elif len(plan.sets) > MAX_SETS:
                failure = (
                    f"telling its alerts apart from other incidents' would take {len(plan.sets)} silences "
                    f"(at most {MAX_SETS})"
                )
        kept: list[dict[str, Any]] = []
        errors: list[str] = []
        if failure is None:
            kept, errors = await self._create(plan.sets, incident, actor, now, until)
        events: list[dict[str, Any]] = []
        if kept:
            detail: dict[str, Any] = {
                "silences": [k["silence_id"] for k in kept],
                "matchers": [describe(tuple(map(tuple, k["matchers"]))) for k in kept],
                "until": until.isoformat(),
            }
            if plan.unsafe:
                detail["not_silenced"] = (
                    f"{len(plan.unsafe)} firing alert(s) with the same labels as an alert of another incident"
                )
            events.append({"type": "alertmanager_silenced", "actor": actor, "detail": detail})
        if errors:
            failure = "; ".join(dict.fromkeys(errors))
            if kept:
                failure = f"{len(plan.sets) - len(kept)} of {len(plan.sets)} silences failed: {failure}"
        if failure is not None:
            events.append(
                {
                    "type": "alertmanager_silence_failed",
                    "actor": actor,
                    "detail": {"reason": failure, "retry": "the incident page offers to try again"},
                }
            )
            self.metrics.alertmanager_silences("create_failed", max(1, len(plan.sets) - len(kept)))
        self.metrics.alertmanager_silences("created", len(kept))
        try:
            await self.store.record_alertmanager_silences(incident.id, now, kept, events)
        except StoreUnavailable as e:  # the silences exist but are not kept: they end at `until` on their own
            log.warning(
                "Alertmanager silences %s of incident %s could not be recorded: %s",
                [k["silence_id"] for k in kept],
                incident.id,
                e,
            )
            return
        # what this silence replaces, or what now outlasts the silence here (shortened, and nothing made)
        await self.expire(now, incident_id=incident.id, actor=actor)

    async def _create(
        self, sets: Sequence[MatcherSet], incident: Incident, actor: str, now: datetime, until: datetime
    ) -> tuple[list[dict[str, Any]], list[str]]:
        """Create one silence per matcher set, each on the first peer that takes it; (kept, errors)."""
        kept: list[dict[str, Any]] = []
        errors: list[str] = []
        comment = self.comment(incident)
        down = False
        for matcher_set in sets:
            if down:  # no peer answered for the previous set: do not wait out every timeout again
                break
            set_errors: list[AlertmanagerError] = []
            for peer in self._peers():
                try:
                    silence_id = await self.api.create_silence(
                        peer,
                        matchers=[Matcher(k, v) for k, v in matcher_set],
                        starts_at=now,
                        ends_at=until,
                        created_by=actor,
                        comment=comment,
                    )
                except AlertmanagerError as e:
                    set_errors.append(e)
                    continue
                self._good_peer = self.api.peers.index(peer)
                kept.append(
                    {
                        "silence_id": silence_id,
                        "peer": peer,
                        "matchers": [list(p) for p in matcher_set],
                        "created_by": actor,
                        "ends_at": until.isoformat(),
                    }
                )
                break
            else:
                errors.extend(str(e) for e in set_errors)
                down = all(e.status is None for e in set_errors)
        return kept, errors

    # --- expire ----------------------------------------------------------------------------------

    async def expire(self, now: datetime, *, incident_id: uuid.UUID | None = None, actor: str = ACTOR) -> int:
        """Expire our Alertmanager silences that must end now (of one incident, or any, a batch at a time) and
        record each outcome; returns how many were expired."""
        due = await self.store.alertmanager_silences_to_expire(now, incident_id=incident_id, limit=EXPIRE_BATCH)
        expired: list[tuple[str, str]] = []
        failed: list[tuple[str, str]] = []
        down: str | None = None
        for s in due:
            if down is not None:  # no peer answered: the rest would wait out the same timeouts
                failed.append((s.silence_id, down))
                continue
            try:
                await self._expire_one(s)
            except AlertmanagerError as e:
                failed.append((s.silence_id, str(e)))
                if e.status is None:
                    down = str(e)
                continue
            expired.append((s.silence_id, s.why))
        if expired or failed:
            await self.store.record_alertmanager_expiries(now, expired, failed, actor=actor)
        self.metrics.alertmanager_silences("expired", len(expired))
        self.metrics.alertmanager_silences("expire_failed", len(failed))
        return len(expired)

    async def _expire_one(self, s: SilenceToExpire) -> None:
        """DELETE it on the peer that took it, else the next; done when a peer expired it, or says it is expired
        or unknown (gone: expired long ago, or lost). Raises the last error when no peer settled it."""
        last: AlertmanagerError | None = None
        for peer in self._peers(s.peer):
            try:
                await self.api.expire_silence(peer, s.silence_id)  # False: unknown to it, nothing left to expire
                return
            except AlertmanagerError as e:
                last = e
                if e.status is None:
                    continue
            # the peer answered with an error: an already expired silence is refused, so ask what it is
            try:
                found = await self.api.silence(peer, s.silence_id)
            except AlertmanagerError:
                continue
            if found is None or found.state == "expired":
                return
        assert last is not None
        raise last

    async def sweep(self, now: datetime) -> None:
        """One pass of the loop: expire what must end, whatever ended the incident's silence."""
        while await self.expire(now) == EXPIRE_BATCH:
            pass
