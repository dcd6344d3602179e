"""`NAME=VALUE` option items, as `mloncall deploy --threshold` and `mloncall runbook run --param` read them."""

from __future__ import annotations

import pytest

from mloncall.core.errors import InvalidInput
from mloncall.core.names import parse_pairs


def test_items_become_a_mapping_stripped_with_the_later_name_winning() -> None:
    got = parse_pairs([" a = 1", "b=x=y", "a=2", "c="], option="--param", example="strategy=canary")
    assert got == {"a": "2", "b": "x=y", "c": ""}


@pytest.mark.parametrize("item", ["novalue", "=1", " =1"])
def test_a_malformed_item_names_the_option_and_an_example(item: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        parse_pairs(["ok=1", item], option="--threshold", example="max_disagreement=0.2")
    assert caught.value.message == (
        f"invalid --threshold {item!r}: use NAME=VALUE, e.g. max_disagreement=0.2"
    )
