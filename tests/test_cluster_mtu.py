"""cluster.mtu's full-size don't-fragment packet, for real: the cluster stage's peers script runs inside two
network namespaces this test makes (kvmqa-mtu-*, joined by a veth pair; no packet leaves them), first with one
MTU on both ends, then with the peer's MTU lowered, then with the peer dropping UDP. Where `ping` is absent
(this machine, the lab images) the packet is a UDP datagram with DF set whose "port unreachable" answer proves
it arrived; a datagram larger than the receiving veth's MTU is dropped by the kernel, as a switch with a
smaller MTU drops it."""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from kvmqa.config.profile import Profile
from kvmqa.core.facts import HostFacts
from kvmqa.core.gate import evaluate_stage
from kvmqa.stages import builtin
from kvmqa.stages.cluster.facts import DEFAULT_MIGRATION_PORT_MIN, SSH_PORT, parse_peers, peer_script

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which("ip") is None, reason="needs root and iproute2 (network namespaces)"
)


def sh(*argv: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, timeout=120, check=check)


@dataclass
class Pair:
    a: str
    b: str
    address: dict[str, str]
    device: dict[str, str]

    def run_script(self, ns: str, peer: str) -> dict[str, Any]:
        script = peer_script(
            [("p0", self.address[peer], (SSH_PORT, DEFAULT_MIGRATION_PORT_MIN))], trust_timeout=5
        )
        done = sh("ip", "netns", "exec", ns, "sh", "-c", script, check=False)
        return parse_peers(done.stdout)

    def set_mtu(self, ns: str, mtu: int) -> None:
        sh("ip", "-n", ns, "link", "set", self.device[ns], "mtu", str(mtu))


@pytest.fixture
def pair() -> Iterator[Pair]:
    tag = secrets.token_hex(3)
    a, b = f"kvmqa-mtu-a-{tag}", f"kvmqa-mtu-b-{tag}"
    dev_a, dev_b = f"kq{tag}a", f"kq{tag}b"
    made: list[str] = []
    try:
        for ns in (a, b):
            sh("ip", "netns", "add", ns)
            made.append(ns)
            sh("ip", "-n", ns, "link", "set", "lo", "up")
        sh("ip", "link", "add", dev_a, "netns", a, "type", "veth", "peer", "name", dev_b, "netns", b)
        for ns, dev, addr in ((a, dev_a, "10.213.0.1"), (b, dev_b, "10.213.0.2")):
            sh("ip", "-n", ns, "addr", "add", f"{addr}/24", "dev", dev)
            sh("ip", "-n", ns, "link", "set", dev, "up")
        yield Pair(a, b, {a: "10.213.0.1", b: "10.213.0.2"}, {a: dev_a, b: dev_b})
    finally:
        for ns in made:
            sh("ip", "netns", "del", ns, check=False)
    assert not [n for n in sh("ip", "netns", "list").stdout.split() if n in (a, b)]


def mtu_verdict(pair: Pair, seen: dict[str, dict[str, Any]]) -> Any:
    """cluster.mtu over two hosts whose scripts saw what `seen` says (a -> b and b -> a)."""
    hosts = {
        n: {"hostname": pair.address[n], "addresses": [pair.address[n]], "migration_port_min": 49152}
        for n in (pair.a, pair.b)
    }
    cross = {
        "peers": {pair.a: {pair.b: seen[pair.a]}, pair.b: {pair.a: seen[pair.b]}},
        "script": {pair.a: {}, pair.b: {}},
    }
    facts = HostFacts(cluster={"hosts": hosts, "missing": {}, "members": [pair.a, pair.b], "cross": cross})
    check = builtin().get("cluster").checks.get("cluster.mtu")
    return next(f for f in evaluate_stage([check], "cluster", facts, Profile()))


def test_a_full_size_packet_crosses_then_not_when_the_peers_mtu_is_smaller(pair: Pair) -> None:
    how = "ping" if shutil.which("ping") else "udp"
    first = {
        ns: pair.run_script(ns, peer)["peers"]["p0"] for ns, peer in ((pair.a, pair.b), (pair.b, pair.a))
    }
    print(first)
    assert first[pair.a]["mtu"] == first[pair.b]["mtu"] == 1500
    assert first[pair.a]["ping"] == first[pair.b]["ping"] == "ok" and first[pair.a]["df_via"] == how
    assert first[pair.a]["tcp"] == {"22": "refused", "49152": "refused"}  # nothing listens: reachable
    ok = mtu_verdict(pair, first)
    assert ok.verdict.value == "pass" and "don't-fragment packet crossed each pair" in ok.message, ok.message

    pair.set_mtu(pair.b, 1400)  # b's link takes no more than 1400 bytes: a's 1500-byte packet is dropped
    second = {
        ns: pair.run_script(ns, peer)["peers"]["p0"] for ns, peer in ((pair.a, pair.b), (pair.b, pair.a))
    }
    print(second)
    assert second[pair.a]["ping"] == "fail"  # a -> b: too big for b
    assert second[pair.b]["ping"] == "ok"  # b -> a: 1400 bytes fit a's 1500
    bad = mtu_verdict(pair, second)
    print(bad.message)
    assert bad.verdict.value == "fail"
    assert f"MTU 1500 on {pair.a}" in bad.message and f"1400 on {pair.b}" in bad.message
    assert (
        "a full-size packet (MTU 1500, don't fragment" in bad.message
        and f"does not reach {pair.b}" in bad.message
    )


@pytest.mark.skipif(shutil.which("ping") is not None, reason="with ping, the UDP datagram is not tried")
def test_a_peer_that_drops_udp_is_not_proven_either_way(pair: Pair) -> None:
    if shutil.which("iptables") is None:
        pytest.skip("needs iptables")
    sh("ip", "netns", "exec", pair.b, "iptables", "-A", "INPUT", "-p", "udp", "-j", "DROP")
    seen = pair.run_script(pair.a, pair.b)["peers"]["p0"]
    assert seen["ping"] == "unknown" and seen["df_via"] == "udp", seen
    back = pair.run_script(pair.b, pair.a)["peers"]["p0"]
    verdict = mtu_verdict(pair, {pair.a: seen, pair.b: back})
    assert verdict.verdict.value == "pass" and f"not proven on {pair.a}→{pair.b}" in verdict.message
