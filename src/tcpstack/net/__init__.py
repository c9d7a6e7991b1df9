"""tcpstack on real networks: a Linux TUN device in a network namespace, the IPv4/IPv6
packet codec around the TCP codec, and the event loop that owns the only real clock.

Modules: packet (IP/ICMP encode, decode, counted drops), tun (/dev/net/tun), netns
(namespace setup, setns), loop (NetLoop: selectors, timers, threads; also a
tcpstack.socket Driver), apps (echo, discard, chargen, transfer), host (NetHost: all of
it together), isn (RFC 6528 ISNs), cli (`tcpstack netns|serve|connect`).
"""
