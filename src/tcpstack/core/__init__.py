"""The sans-I/O TCP core: no sockets, clocks, randomness, threads, logging or files."""
