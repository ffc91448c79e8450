"""The file side of firmware updates and log uploads: an HTTP server the test system hosts, and the station's
client for it.

``FileServer`` serves files by GET (at a chosen rate, so a station can be caught mid-download) and stores
what a station uploads by PUT or POST (its log), on 127.0.0.1 by default. ``download`` and ``upload`` are
what the emulated station uses for UpdateFirmware's ``location`` and GetLog's ``remoteLocation``;
``signed_firmware`` makes an image with a signing certificate and signature at run time.

Rates: bytes per second. Times: seconds.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

log = logging.getLogger(__name__)


@dataclass
class FileServer:
    """A minimal HTTP/1.1 file server for OCPP file transfers."""

    host: str = "127.0.0.1"
    port: int = 0
    rate: float = 1e9
    """Download speed [B/s] of served files."""
    files: dict[str, bytes] = field(default_factory=dict)
    """Path (``/firmware.bin``) -> content served by GET."""
    received: dict[str, bytes] = field(default_factory=dict)
    """Path -> content uploaded by PUT or POST."""
    store_delay: float = 0.0
    """How long storing an upload takes before the answer [s], so a station can be caught mid-upload."""

    def __post_init__(self) -> None:
        self._server: asyncio.base_events.Server | None = None

    def url(self, path: str) -> str:
        return f"http://{self.host}:{self.port}{path}"

    async def start(self) -> "FileServer":
        self._server = await asyncio.start_server(self._serve, self.host, self.port)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None

    async def __aenter__(self) -> "FileServer":
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            request = (await reader.readline()).decode("latin-1").split()
            headers: dict[str, str] = {}
            while (line := (await reader.readline()).decode("latin-1").strip()):
                name, _, value = line.partition(":")
                headers[name.strip().lower()] = value.strip()
            if len(request) < 2:
                await self._respond(writer, 400, b"bad request\n")
                return
            method, path = request[0], request[1]
            if method == "GET":
                body = self.files.get(path)
                if body is None:
                    await self._respond(writer, 404, b"no such file\n")
                    return
                await self._respond(writer, 200, body, paced=True)
            elif method in ("PUT", "POST"):
                self.received[path] = await reader.readexactly(int(headers.get("content-length", "0")))
                await asyncio.sleep(self.store_delay)
                await self._respond(writer, 201, b"stored\n")
            else:
                await self._respond(writer, 405, b"GET, PUT or POST\n")
        except (ConnectionError, asyncio.IncompleteReadError, ValueError) as exc:
            log.info("file server: request failed: %s", exc)
        finally:
            writer.close()

    async def _respond(self, writer: asyncio.StreamWriter, status: int, body: bytes, paced: bool = False) -> None:
        writer.write(f"HTTP/1.1 {status} X\r\nContent-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode())
        chunk = max(1, int(self.rate / 10)) if paced else len(body) or 1
        for i in range(0, len(body), chunk):
            writer.write(body[i:i + chunk])
            await writer.drain()
            if paced and i + chunk < len(body):
                await asyncio.sleep(chunk / self.rate)
        await writer.drain()


class TransferError(RuntimeError):
    """A download or upload failed (the URL, the status or the reason is in the message)."""


def _open(request: urllib.request.Request, timeout: float) -> bytes:
    try:
        with urllib.request.urlopen(request, timeout=timeout) as answer:  # noqa: S310 - http(s) URLs from the CSMS
            return bytes(answer.read())
    except (urllib.error.URLError, OSError, ValueError) as exc:
        raise TransferError(f"{request.get_method()} {request.full_url}: {exc}") from None


async def download(url: str, timeout: float = 60.0) -> bytes:
    """GET ``url`` (http or https)."""
    return await asyncio.to_thread(_open, urllib.request.Request(url), timeout)


async def upload(url: str, content: bytes, timeout: float = 60.0) -> None:
    """PUT ``content`` to ``url``."""
    await asyncio.to_thread(_open, urllib.request.Request(url, data=content, method="PUT"), timeout)


def signed_firmware(size: int = 16_384) -> tuple[bytes, str, str]:
    """A firmware image of ``size`` bytes, a self-signed signing certificate (PEM) and the image's ECDSA
    P-256 / SHA-256 signature (base64)."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "evhil firmware signing")])
    now = datetime.now(timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - timedelta(days=1))
            .not_valid_after(now + timedelta(days=30)).sign(key, hashes.SHA256()))
    image = (bytes(range(256)) * (size // 256 + 1))[:size]
    signature = base64.b64encode(key.sign(image, ec.ECDSA(hashes.SHA256()))).decode()
    return image, cert.public_bytes(serialization.Encoding.PEM).decode(), signature
