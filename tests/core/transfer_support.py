"""Shared setup for the reliable-transfer exact-segment tests (tests/core/test_transfer_*).

`TransferHarness` extends the state-machine harness with an active open that offers
whatever options the Config turns on (RFC 7323 window scale and timestamps, RFC 2018
SACK-permitted) and a peer SYN,ACK carrying exactly the options a test chooses. Our
timestamp clock is checked to tick once per millisecond (RFC 7323 5.4 allows 1 ms to
1 s per tick): every TSval we send is the SYN's TSval plus the milliseconds elapsed.
"""

from __future__ import annotations

from dataclasses import replace

from tcpstack.core.config import PLAIN, Config
from tcpstack.core.connection import MAX_UNSCALED_WINDOW, window_shift_for
from tcpstack.core.events import Established
from tcpstack.core.segment import NO_OPTIONS, Options, Segment
from tcpstack.core.seq import MASK
from tcpstack.core.state import State
from tests.core.harness import ACK, LOCAL_ISS, MS, PSH, REMOTE_ISS, SYN, Harness

# The peer's timestamp clock: TSval = PEER_TS0 + milliseconds (any start value works).
PEER_TS0 = 7_000_000


class TransferHarness(Harness):
    """A Harness whose handshake negotiates the options under test."""

    def __init__(self, config: Config | None = None) -> None:
        super().__init__(config if config is not None else PLAIN)
        self.ts0 = 0  # our TSval at time 0 (learned from the SYN)

    # -- timestamps ----------------------------------------------------------------

    def tsval(self, ms: float | None = None) -> int:
        """Our TSval at `ms` (default: now): one tick per millisecond."""
        now_ms = self.now // MS if ms is None else int(ms)
        return (self.ts0 + now_ms) & MASK

    @staticmethod
    def peer_tsval(ms: float) -> int:
        return (PEER_TS0 + int(ms)) & MASK

    def our_ts(self, ecr: int, ms: float | None = None) -> Options:
        """The options of one of our non-SYN segments: <TS val now, ecr `ecr`>."""
        return Options(timestamp=(self.tsval(ms), ecr))

    # -- the handshake -------------------------------------------------------------

    def syn_options(self) -> Options:
        """What our SYN offers under this Config (RFC 9293 3.7.1, RFC 7323, RFC 2018)."""
        config = self.config
        return Options(
            mss=config.mss,
            window_scale=window_shift_for(config.receive_buffer_size)
            if config.window_scaling
            else None,
            sack_permitted=config.sack,
            timestamp=(self.tsval(), 0) if config.timestamps else None,
        )

    def open_with(
        self,
        peer_options: Options,
        *,
        peer_ts: int | None = None,
        window: int = 65535,
        at: float = 0,
        ack_window: int | None = None,
    ) -> None:
        """Active open; the SYN,ACK (with `peer_options`, raw `window`) arrives at `at` ms.

        With `peer_ts` the SYN,ACK also carries <TS val peer_ts, ecr our SYN's TSval>.
        Checks our SYN and the ACK that completes the handshake exactly. `ack_window` is
        the window field that ACK must carry (default: the unscaled receive buffer).
        """
        config = self.config
        self.conn.open(now=self.now)
        [syn] = self.sent()
        if config.timestamps:
            assert syn.options.timestamp is not None
            self.ts0 = (syn.options.timestamp[0] - self.now // MS) & MASK
        # RFC 7323 2.2: the window field of a SYN is never scaled.
        syn_window = min(config.receive_buffer_size, MAX_UNSCALED_WINDOW)
        assert syn == self.ours(SYN, LOCAL_ISS, window=syn_window, options=self.syn_options())
        if peer_ts is not None:
            peer_options = replace(peer_options, timestamp=(peer_ts, self.tsval()))
        self.feed(
            self.peer(
                SYN | ACK, REMOTE_ISS, self.local_seq(1), window=window, options=peer_options
            ),
            at=at,
        )
        if ack_window is None:
            ack_window = min(config.receive_buffer_size, MAX_UNSCALED_WINDOW)
        options = NO_OPTIONS
        if config.timestamps and peer_options.timestamp is not None:
            options = self.our_ts(peer_options.timestamp[0])
        self.expect(
            self.ours(
                ACK, self.local_seq(1), self.remote_seq(1), window=ack_window, options=options
            )
        )
        assert self.state is State.ESTABLISHED
        assert self.events() == [Established()]

    # -- data ----------------------------------------------------------------------

    def data_from_peer(
        self,
        offset: int,
        payload: bytes,
        *,
        ack: int = 1,
        at: float | None = None,
        window: int = 65535,
        options: Options = NO_OPTIONS,
        flags: int = ACK,
    ) -> None:
        """Peer text at remote offset `offset`, acknowledging our offset `ack`."""
        self.feed(
            self.peer(
                flags,
                self.remote_seq(offset),
                self.local_seq(ack),
                window=window,
                payload=payload,
                options=options,
            ),
            at=at,
        )

    def ack_from_peer(
        self,
        ack: int,
        *,
        at: float | None = None,
        window: int = 65535,
        seq: int = 1,
        options: Options = NO_OPTIONS,
    ) -> None:
        """A bare ACK from the peer of our offset `ack`; its SEQ is remote offset `seq`."""
        self.feed(
            self.peer(
                ACK, self.remote_seq(seq), self.local_seq(ack), window=window, options=options
            ),
            at=at,
        )

    def data_out(
        self,
        offset: int,
        payload: bytes,
        *,
        ack: int = 1,
        psh: bool = False,
        window: int | None = None,
        options: Options = NO_OPTIONS,
    ) -> Segment:
        """One of our data segments at local offset `offset`, acknowledging remote `ack`."""
        return self.ours(
            ACK | PSH if psh else ACK,
            self.local_seq(offset),
            self.remote_seq(ack),
            window=window,
            payload=payload,
            options=options,
        )

    def bare_ack(
        self, ack: int, *, seq: int = 1, window: int | None = None, options: Options = NO_OPTIONS
    ) -> Segment:
        """Our bare ACK of remote offset `ack`, with SEQ at local offset `seq`."""
        return self.ours(
            ACK, self.local_seq(seq), self.remote_seq(ack), window=window, options=options
        )


def pattern(size: int, start: int = 0) -> bytes:
    """`size` recognisable bytes: the stream offset modulo 251 from `start` on."""
    return bytes((start + i) % 251 for i in range(size))


__all__ = ["PEER_TS0", "REMOTE_ISS", "TransferHarness", "pattern"]
