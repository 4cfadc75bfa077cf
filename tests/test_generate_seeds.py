"""--seeds / --num parsing."""
from __future__ import annotations

import pytest

from generate.seeds_spec import SeedSpecError, parse_seeds, resolve_seeds


def test_ranges_and_lists():
    assert parse_seeds("0-7,12") == [0, 1, 2, 3, 4, 5, 6, 7, 12]
    assert parse_seeds(" 5 , 3-4 ") == [5, 3, 4]
    assert parse_seeds("9") == [9]
    assert resolve_seeds(num=3) == [0, 1, 2]
    assert resolve_seeds() == [0]
    assert resolve_seeds(spec="2-3") == [2, 3]


@pytest.mark.parametrize("spec,match", [("", "empty"), ("7-3", "backwards"), ("a", "not a seed"), ("-1", "not a seed"),
                                        ("1,,2", "not a seed"), ("1,1", "twice"), ("0-99999999", "more than"),
                                        ("1.5", "not a seed")])
def test_bad_specs_name_the_problem(spec, match):
    with pytest.raises(SeedSpecError, match=match):
        parse_seeds(spec)


def test_num_and_seeds_exclusive():
    with pytest.raises(SeedSpecError, match="not both"):
        resolve_seeds(num=2, spec="0-1")
    with pytest.raises(SeedSpecError, match="between"):
        resolve_seeds(num=0)
