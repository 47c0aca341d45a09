"""Each process pod's own address (podnet): the pool, and the addresses being local."""

from __future__ import annotations

import ipaddress
import socket
import threading

import pytest

from fovea.localcluster.podnet import FALLBACK_CIDR, POD_CIDR, AddressPool, NoAddress, bindable

SMALL = ipaddress.IPv4Network("198.18.7.0/30")  # two usable addresses: .1 and .2


def test_each_pod_holds_its_own_address_until_released() -> None:
    pool = AddressPool(SMALL, check=lambda address, port: True)
    first = pool.allocate("a", 8080)
    second = pool.allocate("b", 8080)
    assert {first, second} == {"198.18.7.1", "198.18.7.2"}
    assert pool.allocate("a", 8080) == first  # stable for the pod while it lives
    with pytest.raises(NoAddress, match=r"no free address in 198\.18\.7\.0/30"):
        pool.allocate("c", 8080)
    pool.release("a")
    assert pool.allocate("c", 8080) == first
    assert pool.held() == {"b": second, "c": first}


def test_a_pod_keeps_the_address_it_was_reported_at_when_free() -> None:
    pool = AddressPool(ipaddress.IPv4Network(POD_CIDR), check=lambda address, port: True)
    assert pool.allocate("a", 0, preferred="198.18.3.4") == "198.18.3.4"
    # Held by another pod, or outside the pool: not given again.
    assert pool.allocate("b", 0, preferred="198.18.3.4") != "198.18.3.4"
    assert pool.allocate("c", 0, preferred="127.0.0.1") != "127.0.0.1"
    assert not pool.contains("198.18.0.0") and not pool.contains("not an address")


def test_an_address_whose_port_is_taken_is_skipped() -> None:
    busy = {("198.18.7.1", 8080)}
    pool = AddressPool(SMALL, check=lambda address, port: (address, port) not in busy)
    assert pool.allocate("a", 8080, preferred="198.18.7.1") == "198.18.7.2"
    assert pool.allocate("b", 9090) == "198.18.7.1"


def test_the_fallback_pool_is_loopback() -> None:
    # Loopback needs no route, but EndpointSlices refuse it: only the fallback.
    assert ipaddress.IPv4Network(FALLBACK_CIDR).is_loopback
    assert not ipaddress.IPv4Network(POD_CIDR).is_loopback


def test_two_servers_share_a_port_on_their_own_loopback_addresses() -> None:
    """What the pool relies on: Linux routes all of 127.0.0.0/8 to this machine."""
    servers = []
    for address in ("127.1.0.1", "127.1.0.2"):
        server = socket.socket()
        server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        server.bind((address, 0 if not servers else servers[0].getsockname()[1]))
        server.listen()
        servers.append(server)
    port = servers[0].getsockname()[1]
    assert not bindable("127.1.0.1", port) and bindable("127.1.0.3", port)
    accepted: list[str] = []

    def accept(server: socket.socket) -> None:
        conn, _ = server.accept()
        accepted.append(conn.getsockname()[0])
        conn.close()

    threads = [threading.Thread(target=accept, args=(s,)) for s in servers]
    for thread in threads:
        thread.start()
    for address in ("127.1.0.1", "127.1.0.2"):
        socket.create_connection((address, port), timeout=5).close()
    for thread in threads:
        thread.join(5)
    for server in servers:
        server.close()
    assert sorted(accepted) == ["127.1.0.1", "127.1.0.2"]
