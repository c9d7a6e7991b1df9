"""`python -m tcpstack.benchmarks [options]`."""

import sys

from tcpstack.benchmarks.runner import run_benchmarks

sys.exit(run_benchmarks())
