"""The backfill hold header: written by replay, read by the worker, never trusted blindly."""

import pytest

from schemas.replay_hold import REPLAY_HOLD_HEADER, hold_header, replay_hold_until


def test_a_hold_reads_back_to_the_millisecond_from_either_header_shape():
    name, value = hold_header(1_795_000_000.1234)
    assert name == REPLAY_HOLD_HEADER and value == b"1795000000123"
    assert replay_hold_until([("other", b"x"), (name, value)]) == 1_795_000_000.123
    assert replay_hold_until({name: value}) == 1_795_000_000.123


@pytest.mark.parametrize("headers", [
    None, [], [("other", b"1795000000000")],
    [(REPLAY_HOLD_HEADER, b"")], [(REPLAY_HOLD_HEADER, None)], [(REPLAY_HOLD_HEADER, b"-5")],
    [(REPLAY_HOLD_HEADER, b"1e18")], [(REPLAY_HOLD_HEADER, b"inf")], [(REPLAY_HOLD_HEADER, b"nan")],
    [(REPLAY_HOLD_HEADER, b" 17")], [(REPLAY_HOLD_HEADER, b"9" * 400)],
    [(REPLAY_HOLD_HEADER, "\u0661\u0662".encode())],
])
def test_a_missing_or_malformed_hold_holds_nothing(headers):
    assert replay_hold_until(headers) is None
