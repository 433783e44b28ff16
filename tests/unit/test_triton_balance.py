"""A stage's Triton client spreads over Triton's replicas again after one restarts.

Triton's Service is a ClusterIP: kube-proxy places each new TCP connection on a ready replica, and
tritonserver never ends a connection. A client that kept its one connection stayed with the
replica it first reached: after a rollout (maxUnavailable 1) every stage was on the replica
replaced first, the other idle. Here two fake Triton replicas sit behind one listener per stage
pod that, like kube-proxy, alternates a new connection between the replicas that accept it.
"""

from __future__ import annotations

import asyncio
import collections

import grpc
from tritonclient.grpc import service_pb2, service_pb2_grpc

from renderkit.triton import TritonModels


class _Replica(service_pb2_grpc.GRPCInferenceServiceServicer):  # type: ignore[misc]
    def __init__(self, name: str, hits: collections.Counter[str]) -> None:
        self.name, self.hits = name, hits

    async def ServerLive(self, request, context):  # type: ignore[no-untyped-def]
        self.hits[self.name] += 1
        return service_pb2.ServerLiveResponse(live=True)


async def _replica(name: str, port: int, hits: collections.Counter[str]) -> tuple[grpc.aio.Server, int]:
    server = grpc.aio.server()
    service_pb2_grpc.add_GRPCInferenceServiceServicer_to_server(_Replica(name, hits), server)
    port = server.add_insecure_port(f"127.0.0.1:{port}")
    await server.start()
    return server, port


class _ClusterIp:
    """Each new connection to the next replica that accepts it (shared by every pod's listener)."""

    def __init__(self, ports: list[int]) -> None:
        self.ports, self.turn = ports, 0
        self.open = 0  # connections through it now

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        for _ in self.ports:
            port = self.ports[self.turn % len(self.ports)]
            self.turn += 1
            try:
                up_reader, up_writer = await asyncio.open_connection("127.0.0.1", port)
                break
            except OSError:
                continue
        else:
            writer.close()
            return

        async def pipe(source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
            try:
                while data := await source.read(65536):
                    sink.write(data)
                    await sink.drain()
            except Exception:
                pass
            finally:
                sink.close()

        self.open += 1
        try:
            await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))
        finally:
            self.open -= 1


def test_stage_clients_spread_over_triton_replicas_again_after_a_rollout() -> None:
    async def scenario() -> tuple[dict[str, int], dict[str, int], int]:
        hits: collections.Counter[str] = collections.Counter()
        a, port_a = await _replica("A", 0, hits)
        b, port_b = await _replica("B", 0, hits)
        cluster_ip = _ClusterIp([port_a, port_b])
        listeners = [await asyncio.start_server(cluster_ip.handle, "127.0.0.1", 0) for _ in range(6)]
        # A client's age is 60 s in a stage (CLIENT_MAX_AGE_S).
        clients = [TritonModels(f"127.0.0.1:{s.sockets[0].getsockname()[1]}", max_age_s=1.0) for s in listeners]

        async def probes() -> dict[str, int]:
            hits.clear()
            for client in clients:
                for _ in range(10):
                    assert await client.healthy()  # a stage's health probe, every HEALTH_PROBE_SECONDS
            return dict(hits)

        try:
            await probes()
            # The rollout: A replaced, then B (every client's connection ends up on the new A).
            for old, name in ((a, "A"), (b, "B")):
                port = port_a if name == "A" else port_b
                await old.stop(0)
                for client in clients:
                    await client.server_live()
                new, _ = await _replica(name, port, hits)
                a, b = (new, b) if name == "A" else (a, new)
            after_rollout = await probes()
            await asyncio.sleep(1.2)  # the clients' age
            await probes()  # the probes that replace them
            later = await probes()
            await asyncio.sleep(0.5)  # the replaced clients, idle, close at once
            return after_rollout, later, cluster_ip.open
        finally:
            for client in clients:
                await client.close()
            for listener in listeners:
                listener.close()
            await a.stop(0)
            await b.stop(0)

    after_rollout, later, connections = asyncio.run(scenario())
    assert set(after_rollout) == {"A"}  # every stage on the replica replaced first
    assert later == {"A": 30, "B": 30}, later  # spread again within a client's age
    assert connections == 6  # one a stage: the replaced clients' connections closed
