"""Silence in both places: the matcher sets never select another incident's alerts (a property test over random
label sets, and the same obligation checked in SQL over alerts stored by real webhooks), and the Alertmanager
silences follow the incident's silence (fake Alertmanager over real HTTP; the real one is in tests/e2e)."""

from __future__ import annotations

from collections.abc import Mapping

from hypothesis import given, settings
from hypothesis import strategies as st

from receiver.silences import ALERTNAME, MatcherPlan, matcher_sets, matches

# Few names and values, so that label sets collide, share and nest often.
_names = st.sampled_from(["instance", "job", "path", "pod", "zone"])
_values = st.sampled_from(["a", "b", "c", ""])
_labels = st.builds(
    lambda name, rest: {ALERTNAME: name, **rest} if name is not None else rest,
    st.sampled_from(["HighLatency", "ErrorRate", "", None]),
    st.dictionaries(_names, _values, max_size=5),
)


def _same(a: Mapping[str, str], b: Mapping[str, str]) -> bool:
    """Equal as Alertmanager sees label sets: a missing label and an empty one are the same."""
    return all(a.get(k, "") == b.get(k, "") for k in {*a, *b})


def _check(plan: MatcherPlan, firing: list[dict[str, str]], others: list[dict[str, str]]) -> None:
    for s in plan.sets:
        names = [k for k, _ in s]
        assert ALERTNAME in names, s
        assert len(names) == len(set(names)), s  # one value per label: never a contradiction
        assert not any(matches(s, o) for o in others), (s, [o for o in others if matches(s, o)])
        assert any(matches(s, m) for m in firing), s  # no set that silences nothing of ours
    for m in firing:
        indistinct = any(_same(m, o) for o in others)
        covered = any(matches(s, m) for s in plan.sets)
        assert covered != indistinct, (m, indistinct, covered)  # covered exactly when it can be told apart
        assert (m in plan.unsafe) == indistinct
    # implied sets are dropped: no set contains another
    for a in plan.sets:
        assert not any(b != a and set(b) <= set(a) for b in plan.sets)


@settings(max_examples=600, deadline=None)
@given(st.lists(_labels, min_size=1, max_size=8, unique_by=lambda d: tuple(sorted(d.items()))),
       st.lists(_labels, max_size=12))
def test_no_matcher_set_selects_another_incidents_alert(firing: list[dict[str, str]],
                                                        others: list[dict[str, str]]) -> None:
    plan = matcher_sets(firing, others)
    _check(plan, firing, others)
    assert len(plan.sets) <= len(firing)
    assert matcher_sets(firing, others) == plan  # deterministic


def test_shared_labels_make_one_silence_when_nothing_else_matches() -> None:
    firing = [{ALERTNAME: "HighLatency", "job": "api", "instance": f"i{n}"} for n in range(3)]
    others = [{ALERTNAME: "HighLatency", "job": "db", "instance": "i0"}, {ALERTNAME: "ErrorRate", "job": "api"}]
    assert matcher_sets(firing, others).sets == ((("alertname", "HighLatency"), ("job", "api")),)


def test_members_are_split_by_a_label_before_one_set_each() -> None:
    # job=api and job=web fire here; job=db, same alertname and instances, belongs to another incident
    firing = [{ALERTNAME: "Down", "job": j, "instance": f"i{n}"} for j in ("api", "web") for n in range(4)]
    others = [{ALERTNAME: "Down", "job": "db", "instance": f"i{n}"} for n in range(4)]
    assert matcher_sets(firing, others).sets == (
        (("alertname", "Down"), ("job", "api")),
        (("alertname", "Down"), ("job", "web")),
    )


def test_a_label_the_members_lack_excludes_a_wider_alert() -> None:
    # the other incident's alert carries every label ours does, and one more: only `pod=""` tells them apart
    firing = [{ALERTNAME: "Down", "job": "api"}]
    others = [{ALERTNAME: "Down", "job": "api", "pod": "p1"}]
    assert matcher_sets(firing, others).sets == ((("alertname", "Down"), ("job", "api"), ("pod", "")),)


def test_the_same_label_set_in_another_incident_is_never_silenced() -> None:
    firing = [{ALERTNAME: "Down", "job": "api"}, {ALERTNAME: "Down", "job": "web"}]
    others = [{ALERTNAME: "Down", "job": "api"}]
    plan = matcher_sets(firing, others)
    assert plan.sets == ((("alertname", "Down"), ("job", "web")),)
    assert plan.unsafe == ({ALERTNAME: "Down", "job": "api"},)


def test_every_alertname_gets_its_own_sets() -> None:
    firing = [{ALERTNAME: "Down", "job": "api"}, {ALERTNAME: "Slow", "job": "api"}]
    assert matcher_sets(firing, []).sets == ((("alertname", "Down"), ("job", "api")),
                                             (("alertname", "Slow"), ("job", "api")))
