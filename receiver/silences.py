"""Silence in both places: the Alertmanager silences that mirror an incident's silence.

`matcher_sets` is pure: from the label sets of an incident's firing members and of every other incident's
member alerts it computes equality matchers, each set with `alertname`, that cover the members and that no other
alert satisfies. Matching follows Alertmanager's rule that a missing label has the empty value, so `job=""`
says "no job label" and can exclude another alert that has one. Sets are as wide as is safe: the labels a group
of members shares, split by one label at a time while other alerts would still match, down to one member's own
labels (plus `name=""` for labels it lacks) as the last resort. A member whose label set another incident's alert
carries too cannot be told apart by any matcher set: it is reported, never silenced.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

Labels = Mapping[str, str]
# A matcher set: sorted (name, value) equality pairs; the value "" matches an alert without that label.
MatcherSet = tuple[tuple[str, str], ...]

ALERTNAME = "alertname"


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
        if k not in shared and all(m.get(k, "") == v for m in rest):
            shared[k] = v
    return shared


def _cover(group: Sequence[Labels], base: Mapping[str, str], conflicts: list[dict[str, str]],
           sets: list[MatcherSet], unsafe: list[Labels]) -> None:
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
    keys = sorted({k for m in group for k in m if k not in chosen})
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


def api_matchers(matcher_set: MatcherSet) -> list[dict[str, object]]:
    """One matcher set in Alertmanager's API v2 form."""
    return [{"name": k, "value": v, "isRegex": False, "isEqual": True} for k, v in matcher_set]
