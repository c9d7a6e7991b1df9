"""A deterministic network simulator for tcpstack.

Nodes (anything shaped like `Node`, e.g. `tcpstack.core.endpoint.Endpoint`) joined by
link directions with delay, jitter, bandwidth and a FIFO queue, loss, duplication,
reordering and corruption, all on a virtual clock of integer microseconds and driven by
seeded per-direction random streams: the same seed gives the same run, byte for byte.

    net = Network(seed=1)
    net.add_node(a)
    net.add_node(b)
    net.link(a.address, b.address, delay=10_000, bandwidth=10_000_000, loss=0.01)
    assert net.run_until(lambda: done(), limit=60_000_000)
"""

from tcpstack.sim.filters import Predicate, Rule, drop_nth, drop_where, hold_where
from tcpstack.sim.link import LinkParams, LinkStats, datagram_size, direction_seed
from tcpstack.sim.network import (
    DEFAULT_MAX_EVENTS_PER_INSTANT,
    Filter,
    Held,
    LinkOptions,
    NetRecord,
    Network,
    Observer,
    SimulationStuck,
    Verdict,
    What,
)
from tcpstack.sim.node import Encoder, Node

__all__ = [
    "DEFAULT_MAX_EVENTS_PER_INSTANT",
    "Encoder",
    "Filter",
    "Held",
    "LinkOptions",
    "LinkParams",
    "LinkStats",
    "NetRecord",
    "Network",
    "Node",
    "Observer",
    "Predicate",
    "Rule",
    "SimulationStuck",
    "Verdict",
    "What",
    "datagram_size",
    "direction_seed",
    "drop_nth",
    "drop_where",
    "hold_where",
]
