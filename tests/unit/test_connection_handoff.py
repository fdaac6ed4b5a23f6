"""The supervisor's round-robin hand-off of accepted connections, on real sockets."""

from __future__ import annotations

import asyncio
import multiprocessing
import socket
from collections.abc import Iterator

import pytest

from skypacs.services.connection_handoff import ConnectionIntake, Dispatcher, Route, channel_pair

RECEIVE_TIMEOUT_S = 10.0


def started_route() -> tuple[Route, socket.socket]:
    supervisor_end, worker_end = channel_pair()
    started = multiprocessing.get_context("spawn").Event()
    started.set()
    worker_end.settimeout(RECEIVE_TIMEOUT_S)
    return Route(supervisor_end, started), worker_end


def receive_connection(worker_end: socket.socket) -> socket.socket:
    message, descriptors, _flags, _address = socket.recv_fds(worker_end, 16, 1)
    assert message
    assert len(descriptors) == 1
    return socket.socket(fileno=descriptors[0])


def pending(worker_end: socket.socket) -> bool:
    worker_end.setblocking(False)
    try:
        worker_end.recv(16, socket.MSG_PEEK)
    except BlockingIOError:
        return False
    finally:
        worker_end.settimeout(RECEIVE_TIMEOUT_S)
    return True


@pytest.fixture
def listener() -> Iterator[socket.socket]:
    with socket.create_server(("127.0.0.1", 0)) as sock:
        yield sock


def connect(listener: socket.socket) -> socket.socket:
    return socket.create_connection(listener.getsockname(), timeout=RECEIVE_TIMEOUT_S)


def dispatch(dispatcher: Dispatcher, rounds: int = 20) -> None:
    """Let the dispatcher accept and hand over what is waiting."""
    for _ in range(rounds):
        dispatcher.serve(0.01)


def test_connections_go_to_the_workers_in_turn(listener: socket.socket) -> None:
    (first, first_end), (second, second_end) = started_route(), started_route()
    dispatcher = Dispatcher(listener, lambda: [first, second])
    clients = [connect(listener) for _ in range(4)]
    try:
        dispatch(dispatcher)
        served = [receive_connection(end) for end in (first_end, second_end, first_end, second_end)]
        # The hand-over is the very connection the client opened.
        for client, connection in zip(clients, served, strict=True):
            client.sendall(b"ping")
            assert connection.recv(4) == b"ping"
            connection.close()
    finally:
        dispatcher.close()
        for client in clients:
            client.close()


def test_a_worker_not_started_or_gone_is_skipped(listener: socket.socket) -> None:
    waiting, waiting_end = started_route()
    waiting.started.clear()
    gone, gone_end = started_route()
    gone_end.close()
    serving, serving_end = started_route()
    dispatcher = Dispatcher(listener, lambda: [waiting, gone, serving])
    clients = [connect(listener) for _ in range(3)]
    try:
        dispatch(dispatcher)
        for _ in clients:
            receive_connection(serving_end).close()
        assert not pending(waiting_end)
    finally:
        dispatcher.close()
        for client in clients:
            client.close()


def test_a_connection_waits_until_a_worker_has_room(listener: socket.socket) -> None:
    route, worker_end = started_route()
    worker_end.close()  # gone: nothing can be handed over
    replacement, replacement_end = started_route()
    routes = [route]
    dispatcher = Dispatcher(listener, lambda: routes)
    client = connect(listener)
    try:
        dispatch(dispatcher)
        routes[0] = replacement
        dispatch(dispatcher)
        receive_connection(replacement_end).close()
    finally:
        dispatcher.close()
        client.close()


def test_nothing_is_accepted_before_a_worker_has_started(listener: socket.socket) -> None:
    route, worker_end = started_route()
    route.started.clear()
    dispatcher = Dispatcher(listener, lambda: [route])
    client = connect(listener)
    try:
        dispatch(dispatcher)
        assert not pending(worker_end)
        route.started.set()
        dispatch(dispatcher)
        receive_connection(worker_end).close()
    finally:
        dispatcher.close()
        client.close()


def test_the_worker_stops_when_the_supervisor_end_closes() -> None:
    async def scenario() -> bool:
        supervisor_end, worker_end = channel_pair()
        gone = asyncio.Event()
        intake = ConnectionIntake(worker_end, asyncio.Protocol, gone.set)
        intake.start()
        supervisor_end.close()
        await asyncio.wait_for(gone.wait(), RECEIVE_TIMEOUT_S)
        return worker_end.fileno() == -1

    assert asyncio.run(scenario())


def test_the_worker_serves_a_handed_over_connection(listener: socket.socket) -> None:
    class Echo(asyncio.Protocol):
        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            self.transport = transport

        def data_received(self, data: bytes) -> None:
            assert isinstance(self.transport, asyncio.Transport)
            self.transport.write(data.upper())

    async def scenario() -> bytes:
        supervisor_end, worker_end = channel_pair()
        started = multiprocessing.get_context("spawn").Event()
        started.set()
        intake = ConnectionIntake(worker_end, Echo, lambda: None)
        intake.start()
        reader, writer = await asyncio.open_connection(*listener.getsockname()[:2])
        accepted, _address = await asyncio.to_thread(listener.accept)
        with accepted:
            assert Route(supervisor_end, started).offer(accepted)
        writer.write(b"hello")
        answer = await asyncio.wait_for(reader.readexactly(5), RECEIVE_TIMEOUT_S)
        writer.close()
        intake.stop()
        supervisor_end.close()
        return answer

    assert asyncio.run(scenario()) == b"HELLO"
