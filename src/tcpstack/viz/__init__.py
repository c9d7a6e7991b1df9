"""Pictures of runs.

ladder       the text ladder printed by `tcpstack scenario`
timeline     a run as data (segments, arrivals, state changes, timer spans, replay steps)
ladder_svg   the ladder as SVG
pcap         pcap / pcapng captures (pcapng with the state changes as packet comments)
states       RFC 9293 figure 5 from TRANSITIONS with a connection's path (Graphviz)
tseq         time-sequence graphs (matplotlib)
artifacts    all of the above for one run, into a directory (`tcpstack scenario --out`)
report       one self-contained HTML page for every seed scenario (`tcpstack report`)
seed_claims  the seed's claims C1-C19 in English with the Chinese original quoted

Only `ladder` is imported by the rest of tcpstack; the others load their third-party
packages (graphviz, matplotlib, rich) when used.
"""
