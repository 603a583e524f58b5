"""An independent NGSI-LD client (ngsildclient, from PyPI) works against the broker unmodified."""

from __future__ import annotations

import pytest
from ngsildclient import Client, Entity

from tests.conftest import Server

pytestmark = pytest.mark.slow


def test_ngsildclient_create_retrieve_query_batch_upsert(server: Server) -> None:
    with Client(hostname="127.0.0.1", port=server.port, verbose=False) as client:
        room = Entity("Room", "Room1")
        room.prop("temperature", 23.5, unitcode="CEL")
        room.gprop("location", (41.39, 2.15))  # ngsildclient takes (lat, lon)
        client.create(room)

        got = client.get("urn:ngsi-ld:Room:Room1")
        assert got["temperature"]["value"] == 23.5
        assert got["location"]["value"]["coordinates"] == [2.15, 41.39]

        rooms = [Entity("Room", f"Room{i}").prop("temperature", 15 + i) for i in range(2, 12)]
        result = client.upsert(rooms)
        assert result.ok and len(result.success) == 10

        warm = client.query(type="Room", q="temperature>20")
        assert sorted(e.id for e in warm) == sorted(
            ["urn:ngsi-ld:Room:Room1"] + [f"urn:ngsi-ld:Room:Room{i}" for i in range(6, 12)])
        assert client.count(type="Room") == 11
        client.delete(got)
        assert not client.exists("urn:ngsi-ld:Room:Room1")
