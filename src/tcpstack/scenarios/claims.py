"""The seed's claims C1-C19 in one line each (shared/seed/README.md has them in full)."""

from __future__ import annotations

CLAIMS: dict[str, str] = {
    "C1": "TCP has eleven states",
    "C2": "active opener: CLOSED SYN_SENT ESTABLISHED FIN_WAIT_1 FIN_WAIT_2 TIME_WAIT CLOSED",
    "C3": "passive opener: CLOSED LISTEN SYN_RCVD ESTABLISHED CLOSE_WAIT LAST_ACK CLOSED",
    "C4": "FIN+ACK in FIN_WAIT_1 goes straight to TIME_WAIT",
    "C5": "simultaneous open and simultaneous close exist and are handled",
    "C6": "SYN_RCVD is short-lived; withholding the final ACK holds it",
    "C7": "FIN_WAIT_2 has no timeout per RFC; Linux bounds orphans with tcp_fin_timeout",
    "C8": "CLOSE_WAIT lasts until the application closes; forgetting to close leaks them",
    "C9": "CLOSING: each side got the other's FIN before the ACK of its own",
    "C10": "LAST_ACK: the passive closer waits for the ACK of its FIN",
    "C11": "TIME_WAIT lasts 2*MSL: to re-ACK a lost final ACK and to let old segments die",
    "C12": "closes take 4 segments, or 3 when FIN and ACK share one; simultaneous takes 4",
    "C13": "SO_LINGER 0 makes close() send RST and skip TIME_WAIT",
    "C14": "3-way open, 4-way close: SYN and ACK share a segment, FIN and ACK usually don't",
    "C15": "keepalive: off by default; idle, interval, count; probe at SND.NXT-1",
    "C16": "Go enables keepalive with 15 s idle and interval",
    "C17": "keepalive finds dead peers and keeps NAT mappings alive",
    "C18": "application heartbeats prove the application, keepalive only the stack",
    "C19": "HTTP keep-alive is connection reuse, not TCP keepalive",
}
