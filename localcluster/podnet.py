"""Pod addresses of the process nodes: one local address per pod.

Every process pod gets an address of its own and listens on its declared
container port there, so two pods can both serve on 8080 and a Service's
EndpointSlices (made by the real kube-controller-manager from
`status.podIP` and the container's port) name a reachable address.

The addresses come from `POD_CIDR` (198.18.0.0/16, the benchmarking range of
RFC 2544: never routed on the internet), which the agent makes local to this
machine with one route, `ip route add local 198.18.0.0/16 dev lo` (Linux's
"AnyIP": every address of the range is this machine's, on loopback). That
needs CAP_NET_ADMIN (root). Loopback addresses (127.0.0.0/8) need no route,
but the API server refuses them in EndpointSlices ("may not be in the
loopback range"), so they are only the fallback: without the route, pods get
addresses from `FALLBACK_CIDR`, reachable by every process here, and Services
list no endpoints for them.
"""

from __future__ import annotations

import ipaddress
import random
import shutil
import socket
import subprocess
import threading
from collections.abc import Callable

POD_CIDR = "198.18.0.0/16"
FALLBACK_CIDR = "127.1.0.0/16"
ATTEMPTS = 200


class NoAddress(RuntimeError):
    """No address of the pool could be given to a pod."""


def bindable(address: str, port: int) -> bool:
    """Whether a listener could bind `address:port` now (port 0: the address alone)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((address, port))
        except OSError:
            return False
    return True


def prepare_network(log: Callable[[str], None]) -> ipaddress.IPv4Network:
    """The pool pods get addresses from: `POD_CIDR` once it is local, else `FALLBACK_CIDR`."""
    network = ipaddress.IPv4Network(POD_CIDR)
    probe = str(network.network_address + 1)
    if bindable(probe, 0):
        return network
    ip = shutil.which("ip")
    reason = "no `ip` command (iproute2)"
    if ip is not None:
        result = subprocess.run(
            [ip, "route", "add", "local", POD_CIDR, "dev", "lo"],
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )
        if bindable(probe, 0):
            log(f"pod addresses: {POD_CIDR} routed to loopback (ip route add local)")
            return network
        reason = result.stderr.strip() or f"`ip route add` exited {result.returncode}"
    log(
        f"pod addresses: cannot make {POD_CIDR} local ({reason}; needs CAP_NET_ADMIN); "
        f"pods get loopback addresses from {FALLBACK_CIDR}, which EndpointSlices refuse"
    )
    return ipaddress.IPv4Network(FALLBACK_CIDR)


class AddressPool:
    """The pods' addresses: one per pod uid, never two pods on one address."""

    def __init__(
        self, network: ipaddress.IPv4Network, check: Callable[[str, int], bool] = bindable
    ) -> None:
        self.network = network
        self._check = check
        self._held: dict[str, str] = {}  # pod uid -> address
        self._lock = threading.Lock()
        self._random = random.Random()

    def allocate(self, uid: str, port: int = 0, preferred: str | None = None) -> str:
        """The address of pod `uid`: the one it holds, else `preferred` (the address it was
        reported at, e.g. before an agent restart) when free, else a free one of the pool.

        Free: no other pod holds it and `port` (0: any) can be bound on it now.
        """
        with self._lock:
            held = self._held.get(uid)
            if held is not None:
                return held
            taken = set(self._held.values())
            for candidate in self._candidates(preferred):
                if candidate not in taken and self._check(candidate, port):
                    self._held[uid] = candidate
                    return candidate
        raise NoAddress(f"no free address in {self.network} for port {port} after {ATTEMPTS} tries")

    def _candidates(self, preferred: str | None) -> list[str]:
        first = self.network.network_address + 1
        size = self.network.num_addresses - 2  # neither the network nor the broadcast address
        picks = [str(first + self._random.randrange(size)) for _ in range(ATTEMPTS)]
        if preferred and self.contains(preferred):
            picks.insert(0, preferred)
        return picks

    def contains(self, address: str) -> bool:
        try:
            ip = ipaddress.IPv4Address(address)
        except ValueError:
            return False
        return ip in self.network and ip not in (
            self.network.network_address,
            self.network.broadcast_address,
        )

    def release(self, uid: str) -> None:
        with self._lock:
            self._held.pop(uid, None)

    def held(self) -> dict[str, str]:
        with self._lock:
            return dict(self._held)
