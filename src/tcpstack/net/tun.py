"""A Linux TUN device: IP packets in and out of a file descriptor.

`TunDevice.open(name)` opens /dev/net/tun and attaches it to the interface `name`
(creating it if it does not exist) with IFF_TUN | IFF_NO_PI: every read returns one
bare IP packet, every write injects one into the kernel as if it had arrived on that
interface. The descriptor is non-blocking; `read()` returns None when nothing waits.

The descriptor belongs to the network namespace the process was in when it opened
/dev/net/tun; the interface can be moved to another namespace afterwards (`ip link set
NAME netns NS`) and the descriptor keeps working. See tcpstack.net.netns.
"""

from __future__ import annotations

import errno
import fcntl
import os
import struct
from typing import Protocol

__all__ = ["IFF_NO_PI", "IFF_TUN", "PacketDevice", "TunDevice", "tun_available"]

TUN_PATH = "/dev/net/tun"
# <linux/if_tun.h>
TUNSETIFF = 0x400454CA
TUNSETPERSIST = 0x400454CB
TUNSETOFFLOAD = 0x400454D0
IFF_TUN = 0x0001
IFF_NO_PI = 0x1000
IFF_VNET_HDR = 0x4000
# TUNSETOFFLOAD flags: what the kernel may hand us unfinished.
TUN_F_CSUM = 0x01  # partial checksums (VIRTIO_NET_HDR_F_NEEDS_CSUM)
TUN_F_TSO4 = 0x02  # TCP segments larger than the MTU (IPv4)
TUN_F_TSO6 = 0x04
VNET_HDR_LEN = 10  # struct virtio_net_hdr
VNET_F_NEEDS_CSUM = 0x01
GSO_TCPV4 = 1  # VIRTIO_NET_HDR_GSO_TCPV4
GSO_TCPV6 = 4
IFNAMSIZ = 16
_IFREQ = struct.Struct("16sH22x")  # struct ifreq: name, then ifr_flags in the union

MAX_PACKET = 65535


class PacketDevice(Protocol):
    """Anything that carries whole IP packets: a TUN device, or a test's socketpair."""

    def fileno(self) -> int: ...

    def read(self) -> bytes | None:
        """One packet, or None when none waits (non-blocking)."""
        ...

    def write(self, packet: bytes) -> None: ...

    def close(self) -> None: ...


_VNET = struct.Struct("=BBHHHH")  # flags, gso_type, hdr_len, gso_size, csum_start, csum_offset
_PLAIN_VNET_HDR = bytes(VNET_HDR_LEN)  # a complete packet: nothing for the kernel to do


def _finish_vnet(frame: bytes) -> bytes:
    """Strip the virtio_net_hdr; fill in a partial checksum (VIRTIO_NET_HDR_F_NEEDS_CSUM:
    the field holds the pseudo-header sum, the sum from csum_start on is ours to add)."""
    flags, _gso, _hdr_len, _gso_size, start, offset = _VNET.unpack_from(frame)
    packet = frame[VNET_HDR_LEN:]
    if not flags & VNET_F_NEEDS_CSUM or start + offset + 2 > len(packet):
        return packet
    value = int.from_bytes(packet[start:], "big")
    if (len(packet) - start) & 1:
        value <<= 8
    total = value % 0xFFFF
    checksum = (~total & 0xFFFF) if total else 0
    at = start + offset
    return b"".join((packet[:at], checksum.to_bytes(2, "big"), packet[at + 2 :]))


def tun_available() -> str | None:
    """None when this process can create TUN devices, else why not (for test skips)."""
    if os.geteuid() != 0:
        return "needs root (CAP_NET_ADMIN) to create TUN devices and network namespaces"
    if not os.path.exists(TUN_PATH):
        return f"{TUN_PATH} is missing"
    return None


class TunDevice:
    """One open TUN interface (IFF_TUN | IFF_NO_PI), non-blocking."""

    def __init__(self, fd: int, name: str, *, offload: bool = False) -> None:
        self._fd = fd
        self.name = name
        self.offload = offload
        self.reads = 0
        self.writes = 0
        self.write_errors = 0

    @classmethod
    def open(cls, name: str, *, persist: bool | None = None, offload: bool = False) -> TunDevice:
        """Open /dev/net/tun and attach to interface `name` (created if missing).

        `persist` True keeps the interface when the descriptor closes (TUNSETPERSIST),
        False makes it vanish then; None leaves the flag as it is.

        `offload` adds IFF_VNET_HDR and lets the kernel hand over TCP segments larger
        than the MTU (TSO, up to 64 KB) with partial checksums, as it does to a virtio
        NIC: fewer, larger reads for bulk data from the kernel. read() finishes the
        checksum and strips the header, so callers still see plain IP packets; the
        segments are larger than the MSS tcpstack announced, which a TCP receiver
        accepts (RFC 9293 3.7.1 bounds what a sender sends, not what a receiver takes).
        """
        encoded = name.encode()
        if not encoded or len(encoded) >= IFNAMSIZ:
            raise ValueError(f"interface name {name!r} must have 1 to {IFNAMSIZ - 1} bytes")
        fd = os.open(TUN_PATH, os.O_RDWR | os.O_NONBLOCK | os.O_CLOEXEC)
        try:
            flags = IFF_TUN | IFF_NO_PI | (IFF_VNET_HDR if offload else 0)
            answer = fcntl.ioctl(fd, TUNSETIFF, _IFREQ.pack(encoded, flags))
            actual = _IFREQ.unpack(answer)[0].rstrip(b"\0").decode()
            if offload:
                fcntl.ioctl(fd, TUNSETOFFLOAD, TUN_F_CSUM | TUN_F_TSO4 | TUN_F_TSO6)
            if persist is not None:
                fcntl.ioctl(fd, TUNSETPERSIST, 1 if persist else 0)
        except BaseException:
            os.close(fd)
            raise
        return cls(fd, actual, offload=offload)

    def fileno(self) -> int:
        if self._fd < 0:
            raise ValueError("TUN device is closed")
        return self._fd

    @property
    def closed(self) -> bool:
        return self._fd < 0

    def read(self) -> bytes | None:
        try:
            packet = os.read(self._fd, MAX_PACKET + VNET_HDR_LEN)
        except BlockingIOError:
            return None
        self.reads += 1
        if self.offload:
            return _finish_vnet(packet)
        return packet

    def write(self, packet: bytes) -> None:
        """Inject one packet; a full kernel queue (ENOBUFS, EAGAIN) drops it, counted."""
        try:
            if self.offload:
                os.writev(self._fd, (_PLAIN_VNET_HDR, packet))
            else:
                os.write(self._fd, packet)
        except OSError as error:
            if error.errno in (errno.EAGAIN, errno.ENOBUFS, errno.EIO):
                self.write_errors += 1
                return
            raise
        self.writes += 1

    def write_gso(self, packet: bytes, *, gso_size: int, header_len: int, ipv6: bool) -> None:
        """Inject one TCP packet larger than the MTU that stands for several segments of
        gso_size payload bytes each (offload mode only): what a virtio NIC does with TSO.
        The checksum must be complete, over the whole packet."""
        if not self.offload:
            raise ValueError("write_gso needs a TUN opened with offload=True")
        header = _VNET.pack(0, GSO_TCPV6 if ipv6 else GSO_TCPV4, header_len, gso_size, 0, 0)
        try:
            os.writev(self._fd, (header, packet))
        except OSError as error:
            if error.errno in (errno.EAGAIN, errno.ENOBUFS, errno.EIO):
                self.write_errors += 1
                return
            raise
        self.writes += 1

    def set_persist(self, persist: bool) -> None:
        fcntl.ioctl(self.fileno(), TUNSETPERSIST, 1 if persist else 0)

    def close(self) -> None:
        if self._fd >= 0:
            fd, self._fd = self._fd, -1
            os.close(fd)

    def __enter__(self) -> TunDevice:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<TunDevice {self.name} fd={self._fd}>"
