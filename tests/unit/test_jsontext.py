"""receiver.jsontext: orjson on the hot paths, with exactly the standard library's results."""

from __future__ import annotations

import json
import math
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from receiver import jsontext

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=20,
)


@given(json_values)
def test_loads_reads_what_json_loads_reads(value: Any) -> None:
    text = json.dumps(value)
    assert jsontext.loads(text.encode()) == json.loads(text)
    assert jsontext.loads(text) == json.loads(text)


@given(json_values)
def test_dumps_writes_what_json_loads_reads_back(value: Any) -> None:
    assert json.loads(jsontext.dumps(value)) == value


def test_dumps_writes_only_standard_json() -> None:
    assert jsontext.dumps({"a": math.inf, "b": -math.inf, "c": math.nan}) == '{"a":null,"b":null,"c":null}'


@pytest.mark.parametrize(
    "body",
    [
        b'{"a": "\\ud800"}',  # a lone surrogate escape: orjson refuses it, Python keeps it
        b'{"a": "\xed\xa0\x80"}',  # the same as UTF-8 bytes: refused by both (invalid UTF-8)
        '{"a": "b"}'.encode("utf-16"),  # UTF-16 with a BOM
        '{"a": "b"}'.encode("utf-32-le"),
        b'{"n": 123456789012345678901234567890}',  # over 64 bits: orjson would read a float
        b'{"n": -9223372036854775809, "m": 18446744073709551616}',
        b'{"x": 0.12345678901234567890123}',
        b'{"n": NaN, "i": -Infinity}',
        b"[" * 2000 + b"]" * 2000,  # deeper than orjson's 1,024
        b'\xef\xbb\xbf{"a": 1}',  # a UTF-8 BOM: refused by both
        b'{"a": 1, "a": 2}',  # duplicate keys: the last wins in both
        b"not json",
        b"",
    ],
)
def test_what_orjson_refuses_gets_the_standard_librarys_answer(body: bytes) -> None:
    try:
        expected: Any = json.loads(body)
    except (ValueError, RecursionError) as e:
        with pytest.raises(type(e)):
            jsontext.loads(body)
        return
    got = jsontext.loads(body)
    if isinstance(expected, dict) and any(isinstance(v, float) and math.isnan(v) for v in expected.values()):
        assert math.isnan(got["n"]) and got["i"] == -math.inf
    else:
        assert got == expected
