"""Stratified folds: every class in every fold where the data allow, folds never empty, the report truthful."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from cellcheck.stratify import assign_folds, auto_folds


def coverage(cases, fold, k):
    per = [set() for _ in range(k)]
    for case, chans in cases.items():
        per[fold[case]] |= chans
    return per


def test_a_rare_class_is_spread_before_common_ones():
    cases = {f"crop{i}": frozenset({0, 1}) for i in range(6)}
    cases |= {"crop10": frozenset({2}), "crop11": frozenset({2}), "crop12": frozenset({2, 0})}
    fold, missing = assign_folds(cases, 3)
    assert missing == [] and all(p == {0, 1, 2} for p in coverage(cases, fold, 3))
    assert fold == assign_folds(dict(reversed(list(cases.items()))), 3)[0]  # order of the input does not matter


def test_a_class_in_fewer_crops_than_folds_is_reported():
    cases = {"a": frozenset({0, 1}), "b": frozenset({0}), "c": frozenset({0}), "d": frozenset({0})}
    fold, missing = assign_folds(cases, 3)
    assert missing == [1] and auto_folds(cases) == 2


def test_auto_folds_follow_the_rarest_class_within_2_to_5():
    assert auto_folds({f"c{i}": frozenset({0}) for i in range(20)}) == 5
    assert auto_folds({"a": frozenset({0, 3}), "b": frozenset({0, 3}), "c": frozenset({0, 3}), "d": frozenset({0})}) == 3
    assert auto_folds({"a": frozenset({0, 3}), "b": frozenset({0})}) == 2


@settings(max_examples=150, deadline=None)
@given(st.dictionaries(st.from_regex(r"crop[0-9]{1,3}", fullmatch=True),
                       st.frozensets(st.integers(0, 6), max_size=5), min_size=1, max_size=25),
       st.integers(1, 6))
def test_folds_are_never_empty_and_the_report_is_true(cases, k):
    fold, missing = assign_folds(cases, k)
    used = min(k, len(cases))
    assert set(fold) == set(cases) and sorted(set(fold.values())) == list(range(used))
    per = coverage(cases, fold, used)
    channels = set().union(*cases.values())
    assert missing == sorted(c for c in channels if any(c not in p for p in per))
    for c in channels:  # a class annotated in at least `used` crops only misses a fold if no move could fix it
        if sum(c in v for v in cases.values()) >= used and c in missing:
            assert len(channels) > 1
