"""The test system's file server and the station's transfer client; firmware signature checks."""

from __future__ import annotations

import asyncio
import time

import pytest

from hil.ocpp.charging_station import signature_valid
from hil.ocpp.file_transfer import FileServer, TransferError, download, signed_firmware, upload


async def test_download_is_paced_and_uploads_are_stored() -> None:
    async with FileServer(rate=20_000, files={"/fw.bin": b"x" * 10_000}) as server:
        started = time.monotonic()
        assert await download(server.url("/fw.bin")) == b"x" * 10_000
        assert time.monotonic() - started >= 0.35  # 10 kB at 20 kB/s
        await upload(server.url("/logs/a.log"), b"log text")
        assert server.received == {"/logs/a.log": b"log text"}
        with pytest.raises(TransferError, match="404"):
            await download(server.url("/missing"))
    with pytest.raises(TransferError, match="GET http://127.0.0.1"):
        await download(server.url("/fw.bin"), timeout=2)


def test_firmware_signatures() -> None:
    image, certificate, signature = signed_firmware()
    assert signature_valid(image, certificate, signature)
    assert not signature_valid(image + b"!", certificate, signature)
    assert not signature_valid(image, certificate, "not base64 at all")
    assert not signature_valid(image, "no certificate", signature)


def test_file_server_answers_a_malformed_request() -> None:
    async def run() -> bytes:
        async with FileServer() as server:
            reader, writer = await asyncio.open_connection(server.host, server.port)
            writer.write(b"\r\n\r\n")
            await writer.drain()
            answer = await reader.read()
            writer.close()
            return answer
    assert asyncio.run(run()).startswith(b"HTTP/1.1 400")
