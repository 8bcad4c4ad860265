import pytest

from cellcheck.annotated_classes import parse_annotated_classes


@pytest.mark.parametrize(
    "raw, channels, mangled",
    [
        ("0,1,2,3", {0, 1, 2, 3}, False),
        (" 13 , 4", {4, 13}, False),
        ("/home/user/cellmap/data/0,1,2,3", {0, 1, 2, 3}, True),
        ("C:\\data\\5,6", {5, 6}, True),
        ("", set(), False),
        ("/basedir/", set(), True),
        ([0, 7], {0, 7}, False),
    ],
)
def test_parses(raw, channels, mangled):
    got = parse_annotated_classes(raw, 14)
    assert got.error is None
    assert got.channels == frozenset(channels)
    assert got.mangled is mangled


@pytest.mark.parametrize("raw", ["0,1,15", "0,a", "1;2", "-1", 3.0, [0, "1"], [14]])
def test_rejects(raw):
    got = parse_annotated_classes(raw, 14)
    assert got.channels is None and got.error
