"""scripts/services.sh checks every port before it starts anything, and `down` stops what `up`
started whatever the port variables say by then.

Every run here uses its own services directory and free ports, never the shared services.
"""

from __future__ import annotations

import os
import random
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.conftest import REPO_ROOT, free_port

SCRIPT = REPO_ROOT / "scripts" / "services.sh"


def listening(port: int) -> bool:
    """Whether something accepts connections on the loopback port."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True
    except OSError:
        return False


def _cluster_ports(count: int) -> list[int]:
    """Free node ports whose bus ports (+10000) are free too."""
    ports: list[int] = []
    while len(ports) < count:
        port = free_port()
        if port <= 55535 and not listening(port + 10000) and port not in ports:
            ports.append(port)
    return ports


@pytest.fixture
def moved(tmp_path: Path) -> Iterator[dict[str, str]]:
    """An environment whose every port and the services directory are this test's own."""
    env = {
        **os.environ,
        "SYNCER_SERVICES_DIR": str(tmp_path / "services"),
        "OPENSEARCH_PORT": str(free_port()),
        "OPENSEARCH_TRANSPORT_PORT": str(free_port()),
        "REDIS_PORT": str(free_port()),
        "MOTO_PORT": str(free_port()),
        "REDIS_CLUSTER_PORTS": " ".join(map(str, _cluster_ports(3))),
        "REDIS_CLUSTER_TLS_PORTS": " ".join(map(str, _cluster_ports(3))),
        "REDIS_CLUSTER_REPLICAS": "0",
        "SERVICES_WAIT_TIMEOUT": "30",
    }
    yield env
    # Whatever a test (or the old script) left behind in its own directory.
    subprocess.run([str(SCRIPT), "down"], env=env, capture_output=True, timeout=120, check=False)


def _run(command: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(SCRIPT), command], env=env, capture_output=True, text=True, timeout=300, check=False
    )


def _all_ports(env: dict[str, str]) -> list[int]:
    named = [env[name] for name in ("OPENSEARCH_PORT", "REDIS_PORT", "MOTO_PORT")]
    cluster = (env["REDIS_CLUSTER_PORTS"] + " " + env["REDIS_CLUSTER_TLS_PORTS"]).split()
    return [int(port) for port in named + cluster]


# (variable, which of its ports to hold: index into the variable's words, +10000 for a bus port)
HELD = [
    pytest.param("REDIS_PORT", 0, 0, id="redis"),
    pytest.param("MOTO_PORT", 0, 0, id="moto"),
    pytest.param("OPENSEARCH_PORT", 0, 0, id="opensearch"),
    pytest.param("REDIS_CLUSTER_PORTS", 1, 0, id="cluster-node"),
    pytest.param("REDIS_CLUSTER_PORTS", 2, 10000, id="cluster-bus"),
    pytest.param("REDIS_CLUSTER_TLS_PORTS", 0, 10000, id="tls-cluster-bus"),
]


@pytest.mark.parametrize(("variable", "word", "offset"), HELD)
def test_up_with_a_taken_port_names_it_its_holder_and_variable_and_starts_nothing(
    moved: dict[str, str], variable: str, word: int, offset: int
) -> None:
    """A port held by another process: exit 1, one message with the port, the holder and the
    variable that moves it, and none of the services is left running."""
    port = int(moved[variable].split()[word]) + offset
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", port))
        holder.listen()
        result = _run("up", moved)
        others_listening = [p for p in _all_ports(moved) if p != port and listening(p)]
    assert result.returncode == 1, result.stderr
    errors = [line for line in result.stderr.splitlines() if "ERROR" in line]
    about_port = [line for line in errors if f"port {port} " in line]
    assert len(about_port) == 1, result.stderr
    assert f"pid {os.getpid()} (" in about_port[0]
    assert "python" in about_port[0]
    assert variable in about_port[0]
    assert errors[-1].endswith("nothing was started: every port is checked before anything starts")
    assert others_listening == []
    assert not (Path(moved["SYNCER_SERVICES_DIR"]) / "started").exists()


def test_down_stops_the_nodes_up_started_after_the_port_variables_changed(
    moved: dict[str, str],
) -> None:
    """`down` reads what `cluster-up` started from its record, not from today's variables."""
    moved["REDIS_CLUSTER_TLS_PORTS"] = ""
    started = [int(port) for port in moved["REDIS_CLUSTER_PORTS"].split()]
    up = _run("cluster-up", moved)
    assert up.returncode == 0, up.stderr
    assert all(listening(port) for port in started)
    changed = {**moved, "REDIS_CLUSTER_PORTS": " ".join(map(str, _cluster_ports(3)))}

    down = _run("down", changed)

    assert down.returncode == 0, down.stderr
    assert [port for port in started if listening(port)] == []
    assert not (Path(moved["SYNCER_SERVICES_DIR"]) / "started").exists()


def test_a_cluster_up_that_fails_after_starting_nodes_stops_them(moved: dict[str, str]) -> None:
    """When the cluster cannot be formed (here: more replicas than 3 nodes allow), the nodes
    that run started are stopped again before it exits 1."""
    moved["REDIS_CLUSTER_TLS_PORTS"] = ""
    moved["REDIS_CLUSTER_REPLICAS"] = "2"
    started = [int(port) for port in moved["REDIS_CLUSTER_PORTS"].split()]

    result = _run("cluster-up", moved)

    assert result.returncode == 1
    assert "redis-cli --cluster create failed" in result.stderr
    assert [port for port in started if listening(port)] == []


def _time_wait_port() -> int:
    """A loopback port whose only socket is a closed connection's end in TIME-WAIT (the client
    side, which Linux will not let a server bind next to until it expires, 60 s later).

    The client binds a port below the ephemeral range first: an ephemeral one can be taken over
    by any other loopback connection meanwhile (tcp_tw_reuse=2, Linux's default, reuses TIME-WAIT
    ports for loopback), and then it is no longer only in TIME-WAIT."""
    low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    first = random.randrange(10000, low - 1000)
    for port in range(first, first + 1000):
        with socket.create_server(("127.0.0.1", 0)) as server, socket.socket() as client:
            try:
                client.bind(("127.0.0.1", port))
            except OSError:
                continue
            client.connect(server.getsockname())
            accepted, _ = server.accept()
            client.close()  # the side that closes first is the one left in TIME-WAIT
            accepted.close()
        with socket.socket() as probe:  # the premise: a server cannot bind it now
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            with pytest.raises(OSError, match="Address already in use"):
                probe.bind(("127.0.0.1", port))
        return port
    raise AssertionError(f"no free loopback port from {first} to {first + 999}")


def test_a_port_in_time_wait_is_not_reported_as_held_by_anyone(moved: dict[str, str]) -> None:
    """TIME-WAIT is nobody's socket: `up` waits for the kernel to release it and says so; when
    it is still not free (here after 1 s, 65 s by default) the message says TIME-WAIT."""
    port = _time_wait_port()
    env = {**moved, "REDIS_PORT": str(port), "SERVICES_TIME_WAIT_S": "1"}
    result = _run("up", env)
    assert result.returncode == 1, result.stderr
    about_port = [line for line in result.stderr.splitlines() if f"port {port} " in line]
    assert "cannot see" not in result.stderr
    assert any("waiting up to 1 s for the kernel to release it" in line for line in about_port)
    assert any(
        "still in TIME-WAIT after 1 s" in line and "REDIS_PORT" in line for line in about_port
    )
    assert not (Path(moved["SYNCER_SERVICES_DIR"]) / "started").exists()


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("REDIS_PORT", "abc"),
        ("MOTO_PORT", "70000"),
        ("OPENSEARCH_PORT", "-1"),
        ("OPENSEARCH_TRANSPORT_PORT", "9400-9300"),
    ],
)
def test_a_port_variable_that_is_no_port_is_one_line_naming_it(
    moved: dict[str, str], variable: str, value: str
) -> None:
    """REDIS_PORT=abc printed a Python traceback: now one error line naming the variable."""
    result = _run("up", {**moved, variable: value})
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        f"[services] ERROR: {variable}: '{value}' is not a port from 1 to 65535"
        + (" or a range low-high of them" if variable == "OPENSEARCH_TRANSPORT_PORT" else "")
    ]
    assert not (Path(moved["SYNCER_SERVICES_DIR"]) / "started").exists()
