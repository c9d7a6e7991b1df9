"""A runner for packetdrill-syntax scripts against tcpstack (see runner.py for the
conventions and parser.py for the syntax)."""

from tcpstack.packetdrill.parser import ParseError, parse_script
from tcpstack.packetdrill.runner import (
    DEFAULT_TOLERANCE_USECS,
    ScriptResult,
    run_file,
    run_script,
)

__all__ = [
    "DEFAULT_TOLERANCE_USECS",
    "ParseError",
    "ScriptResult",
    "parse_script",
    "run_file",
    "run_script",
]
