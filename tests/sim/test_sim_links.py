"""Link parameters, datagram sizes and the codec agreement that makes both modes equal."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tcpstack.core.codec import encode_options, encode_segment
from tcpstack.core.segment import NO_OPTIONS, Datagram, Options, Segment
from tcpstack.sim import LinkParams, Network, datagram_size
from tcpstack.sim.link import options_length, tcp_length
from tcpstack.sim.testing import A, B

U32 = st.integers(0, 2**32 - 1)

options_strategy = st.builds(
    Options,
    mss=st.none() | st.integers(0, 65535),
    window_scale=st.none() | st.integers(0, 14),
    sack_permitted=st.booleans(),
    sack_blocks=st.lists(st.tuples(U32, U32), max_size=4).map(tuple),
    timestamp=st.none() | st.tuples(U32, U32),
    unknown=st.lists(
        st.tuples(st.sampled_from([6, 7, 19, 28, 30, 253, 254]), st.binary(max_size=6)),
        max_size=2,
    ).map(tuple),
)


@given(options_strategy)
def test_options_length_matches_the_codec(options: Options) -> None:
    try:
        encoded = encode_options(options)
    except ValueError:
        return  # options that do not fit cannot be sent in either mode
    assert options_length(options) == len(encoded)


@given(options_strategy, st.binary(max_size=64), st.booleans())
def test_datagram_size_is_ip_header_plus_encoded_segment(
    options: Options, payload: bytes, ipv6: bool
) -> None:
    src, dst = ("fd00::1", "fd00::2") if ipv6 else (A, B)
    segment = Segment(src_port=1, dst_port=2, seq=3, options=options, payload=payload)
    try:
        encoded = encode_segment(segment, src, dst)
    except ValueError:
        return
    d = Datagram(src, dst, segment)
    assert tcp_length(d) == len(encoded)
    assert datagram_size(d) == (40 if ipv6 else 20) + len(encoded)


def test_typical_option_sets() -> None:
    syn = Options(mss=1460, sack_permitted=True, timestamp=(1, 0), window_scale=7)
    assert options_length(syn) == 20
    assert options_length(Options(timestamp=(1, 2))) == 12
    assert options_length(NO_OPTIONS) == 0
    assert options_length(Options()) == 0


def test_defaults() -> None:
    params = LinkParams()
    assert params.delay == 1_000
    assert params.bandwidth is None and params.queue_limit is None
    assert params.loss == params.duplicate == params.reorder == params.corrupt == 0.0


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"delay": 1.5}, TypeError),
        ({"delay": True}, TypeError),
        ({"delay": -1}, ValueError),
        ({"jitter": -1}, ValueError),
        ({"bandwidth": 0}, ValueError),
        ({"bandwidth": 1e6}, TypeError),
        ({"queue_limit": -1}, ValueError),
        ({"loss": 1.5}, ValueError),
        ({"duplicate": -0.1}, ValueError),
        ({"reorder": "often"}, TypeError),
        ({"corrupt": 2}, ValueError),
        ({"reorder_delay": -5}, ValueError),
    ],
)
def test_bad_params_are_rejected(kwargs: dict[str, object], error: type[Exception]) -> None:
    with pytest.raises(error):
        LinkParams(**kwargs)  # type: ignore[arg-type]


def test_params_are_frozen() -> None:
    params = LinkParams()
    with pytest.raises(AttributeError):
        params.delay = 5  # type: ignore[misc]


def test_unknown_links_raise_key_error() -> None:
    net = Network(wire=False)
    with pytest.raises(KeyError):
        net.link_params(A, B)
    with pytest.raises(KeyError):
        net.link_stats(A, B)
    with pytest.raises(TypeError):
        net.link_direction(A, B, {"delay": 5})  # type: ignore[arg-type]
