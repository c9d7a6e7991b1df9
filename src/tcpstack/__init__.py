"""tcpstack: a TCP implementation in pure Python that makes every state visible."""

__version__ = "0.1.0"
