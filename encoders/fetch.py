"""Fetching an image by URL without opening the server's network to whoever wrote the URL (SSRF).

An article's ``image_ref`` can come from anyone holding an API key, so a fetch must never reach
what only the server can reach (a metadata service, an admin port on localhost, the LAN):

* only ``http`` and ``https`` URLs are fetched;
* the host is resolved once, and every address it resolves to must be public: loopback,
  private, link-local, multicast, reserved, unspecified and other not globally routable
  addresses are refused, also when they hide inside an IPv6 address (IPv4-mapped, 6to4, Teredo,
  NAT64), unless ``FetchPolicy.allow`` names the host or a network holding the address;
* the connection goes to those checked addresses (the URL's name still makes the Host header and,
  for https, the SNI and the certificate check), so no second DNS answer can move it elsewhere;
* a redirect is followed (at most ``max_redirects``) only after the same checks on its target;
* one deadline covers the whole image: resolving, connecting, TLS, every redirect and every read,
  so a server trickling its headers or body a byte at a time is cut off like a silent one;
* a body over ``max_bytes`` is refused (by its Content-Length, else counted while it arrives).

``ImageCache`` keeps what fetching gave (the bytes, or why there are none) under the var
directory, so an image is fetched once: by the API worker that received the article, before SQL
holds it; other workers' catch-up, restarted workers and the nightly build read the cache.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import hashlib
import http.client
import io
import ipaddress
import json
import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote, urljoin, urlsplit

log = logging.getLogger(__name__)

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network

USER_AGENT = "newsrecall-img2vec"
REDIRECTS = frozenset({301, 302, 303, 307, 308})
READ_CHUNK = 64 * 1024
NAT64 = ipaddress.ip_network("64:ff9b::/96")
# Characters a request target may carry as they are; anything else is percent-encoded.
TARGET_SAFE = "/%:@!$&'()*+,;=-._~?"


class ImageFailure(Exception):
    """Why an image could not be had: missing, corrupt, too_large, refused (a URL or address this
    server does not fetch, or a path that came over HTTP), timeout or fetch_error."""

    def __init__(self, reason: str, detail: str = ""):
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason


def is_url(ref: str) -> bool:
    return ref[:8].lower().startswith(("http://", "https://"))


def _embedded_ipv4(address: Address) -> ipaddress.IPv4Address | None:
    if address.version != 6:
        return None
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address.sixtofour is not None:
        return address.sixtofour
    if address.teredo is not None:
        return address.teredo[1]
    if address in NAT64:
        return ipaddress.IPv4Address(int(address) & 0xFFFF_FFFF)
    return None


def is_public(address: Address) -> bool:
    """Whether an address is globally routable (and so is every IPv4 address it carries)."""
    for candidate in (address, _embedded_ipv4(address)):
        if candidate is not None and (
                candidate.is_loopback or candidate.is_private or candidate.is_link_local
                or candidate.is_multicast or candidate.is_reserved or candidate.is_unspecified
                or not candidate.is_global):
            return False
    return True


@dataclass(frozen=True)
class FetchPolicy:
    max_bytes: int = 20_000_000
    deadline: float = 3.0  # seconds for one image, everything included
    allow_hosts: frozenset[str] = frozenset()  # fetched even though their addresses are not public
    allow_networks: tuple[Network, ...] = ()
    max_redirects: int = 3

    @classmethod
    def of(cls, max_bytes: int, deadline: float, allow: str = "") -> FetchPolicy:
        """``allow``: comma-separated host names, addresses and networks (``image_fetch_allow``)."""
        hosts, networks = set(), []
        for entry in (part.strip().lower() for part in allow.split(",")):
            if not entry:
                continue
            try:
                networks.append(ipaddress.ip_network(entry.strip("[]"), strict=False))
            except ValueError:
                hosts.add(entry)
        return cls(max_bytes, deadline, frozenset(hosts), tuple(networks))

    def allows(self, host: str, address: Address) -> bool:
        if is_public(address) or host in self.allow_hosts:
            return True
        candidates = [address, _embedded_ipv4(address)]
        return any(candidate is not None and candidate.version == network.version and candidate in network
                   for candidate in candidates for network in self.allow_networks)


def _left(deadline: float) -> float:
    left = deadline - time.monotonic()
    if left <= 0:
        raise TimeoutError("the image's deadline passed")
    return left


class _DeadlineSocket:
    """A connected socket whose every send and receive waits at most until the deadline.

    Like a socket, it is really closed once it and every file ``makefile`` made are closed
    (http.client closes the connection as soon as an HTTP/1.0 response arrives, then reads the
    body through the response's file)."""

    def __init__(self, sock: socket.socket, deadline: float):
        self._sock = sock
        self._deadline = deadline
        self._files = 0
        self._closed = False

    def _arm(self) -> None:
        self._sock.settimeout(_left(self._deadline))

    def sendall(self, data, *args):
        self._arm()
        return self._sock.sendall(data, *args)

    def recv_into(self, buffer) -> int:
        self._arm()
        return self._sock.recv_into(buffer)

    def makefile(self, *_args, **_kwargs) -> io.BufferedReader:
        self._files += 1
        return io.BufferedReader(_DeadlineReader(self))

    def file_closed(self) -> None:
        self._files -= 1
        if self._closed and self._files == 0:
            self._sock.close()

    def close(self) -> None:
        self._closed = True
        if self._files == 0:
            self._sock.close()

    def __getattr__(self, name: str):
        return getattr(self._sock, name)


class _DeadlineReader(io.RawIOBase):
    def __init__(self, sock: _DeadlineSocket):
        self._sock = sock

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        return self._sock.recv_into(buffer)

    def close(self) -> None:
        if not self.closed:
            self._sock.file_closed()
        super().close()


class _Pinned:
    """An http.client connection to addresses checked beforehand: the URL's name is kept for the
    Host header, SNI and the certificate, the socket goes to one of ``addresses`` and nowhere else."""

    def __init__(self, host: str, port: int, *, addresses: list[str], deadline: float, **kwargs):
        super().__init__(host, port, timeout=_left(deadline), **kwargs)
        self._checked_addresses = addresses
        self._deadline = deadline
        self._create_connection = self._connect_to_checked_address

    def _connect_to_checked_address(self, _host_port, _timeout, source_address=None) -> socket.socket:
        """The first of the checked addresses that accepts, in the resolver's order."""
        error: OSError | None = None
        for address in self._checked_addresses:
            try:
                return socket.create_connection((address, self.port), _left(self._deadline), source_address)
            except TimeoutError:
                raise
            except OSError as refused:
                error = refused
        raise error or OSError(f"no address to connect to for {self.host}")

    def connect(self) -> None:
        super().connect()  # TCP (and TLS for https) within the deadline
        self.sock = _DeadlineSocket(self.sock, self._deadline)


class _PinnedHTTPConnection(_Pinned, http.client.HTTPConnection):
    pass


class _PinnedHTTPSConnection(_Pinned, http.client.HTTPSConnection):
    pass


_resolver: concurrent.futures.ThreadPoolExecutor | None = None
_resolver_lock = threading.Lock()


def _resolve(host: str, port: int, deadline: float) -> list[Address]:
    """Every address of ``host``, once, within the deadline (getaddrinfo cannot be interrupted:
    it runs in a thread and is abandoned when the deadline passes)."""
    global _resolver
    with _resolver_lock:
        if _resolver is None:
            _resolver = concurrent.futures.ThreadPoolExecutor(4, thread_name_prefix="image-dns")
    future = _resolver.submit(socket.getaddrinfo, host, port, type=socket.SOCK_STREAM)
    try:
        infos = future.result(timeout=_left(deadline))
    except concurrent.futures.TimeoutError as error:
        raise TimeoutError(f"resolving {host}") from error
    except OSError as error:
        raise ImageFailure("fetch_error", f"cannot resolve {host}: {error}") from error
    addresses: list[Address] = []
    for info in infos:
        address = ipaddress.ip_address(str(info[4][0]).split("%")[0])
        if address not in addresses:
            addresses.append(address)
    if not addresses:
        raise ImageFailure("fetch_error", f"{host} has no address")
    return addresses


def _parse(url: str) -> tuple[str, str, int, str]:
    """(scheme, ASCII host, port, request target) of an http(s) URL, or refused."""
    try:
        parts = urlsplit(url)
        port = parts.port
        host = (parts.hostname or "").encode("idna").decode("ascii")
    except (ValueError, UnicodeError) as error:
        raise ImageFailure("refused", f"not a URL this server fetches: {error}") from error
    if parts.scheme not in ("http", "https"):
        raise ImageFailure("refused", "only http and https URLs are fetched")
    if not host:
        raise ImageFailure("refused", "a URL without a host")
    target = quote(parts.path or "/", safe=TARGET_SAFE)
    if parts.query:
        target += "?" + quote(parts.query, safe=TARGET_SAFE)
    return parts.scheme, host, port or (443 if parts.scheme == "https" else 80), target


def _checked_addresses(host: str, port: int, policy: FetchPolicy, deadline: float) -> list[str]:
    """Every address of ``host``, all allowed; refused when any one is not (a name that resolves to
    a public and a private address may be answered either way next time: trust neither)."""
    addresses = _resolve(host, port, deadline)
    refused = [address for address in addresses if not policy.allows(host, address)]
    if refused:
        raise ImageFailure("refused", f"{host} resolves to {refused[0]}, not a public address")
    return [str(address) for address in addresses]


def _body(response: http.client.HTTPResponse, max_bytes: int, deadline: float) -> bytes:
    length = response.getheader("Content-Length", "")
    if length.strip().isdigit() and int(length) > max_bytes:
        raise ImageFailure("too_large", f"Content-Length {length}")
    data = bytearray()
    while chunk := response.read(READ_CHUNK):
        data += chunk
        if len(data) > max_bytes:
            raise ImageFailure("too_large", f"over {max_bytes} bytes")
        _left(deadline)
    return bytes(data)


def fetch(url: str, policy: FetchPolicy) -> bytes:
    """The body of ``url`` (status 200), or ``ImageFailure`` saying why not."""
    deadline = time.monotonic() + policy.deadline
    try:
        for _ in range(policy.max_redirects + 1):
            scheme, host, port, target = _parse(url)
            addresses = _checked_addresses(host, port, policy, deadline)
            connection_class = _PinnedHTTPSConnection if scheme == "https" else _PinnedHTTPConnection
            connection = connection_class(host, port, addresses=addresses, deadline=deadline)
            response = None
            try:
                connection.request("GET", target, headers={"User-Agent": USER_AGENT, "Accept": "image/*"})
                response = connection.getresponse()
                if response.status in REDIRECTS and response.getheader("Location"):
                    url = urljoin(url, response.getheader("Location"))
                    continue
                if response.status in (404, 410):
                    raise ImageFailure("missing", f"HTTP {response.status}")
                if response.status != 200:
                    raise ImageFailure("fetch_error", f"HTTP {response.status}")
                return _body(response, policy.max_bytes, deadline)
            finally:
                if response is not None:
                    response.close()
                connection.close()
        raise ImageFailure("fetch_error", f"more than {policy.max_redirects} redirects")
    except TimeoutError as error:  # before OSError: it is one
        raise ImageFailure("timeout", f"over {policy.deadline:g} s") from error
    except (OSError, http.client.HTTPException, ValueError) as error:  # refused, reset, TLS, bad HTTP
        raise ImageFailure("fetch_error", f"{type(error).__name__}: {error}") from error


def _write_atomically(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        tmp.write_bytes(data)
        os.replace(tmp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()


class ImageCache:
    """What fetching each URL gave, on disk (``{var_dir}/cache/images``), shared by every process.

    Bytes are stored by content, ``blobs/ab/<sha256 of the bytes>``, and each URL names its blob
    in ``urls/cd/<sha256 of the URL>.json``, so an image behind many URLs is kept once. Why a URL
    gave no image is kept too: for good when the answer was definite (missing, too_large), for
    ``RETRY_AFTER`` seconds when it may pass (timeout, fetch_error), and never for a refused
    address, which involved no request and may be allowed later. Files are written atomically
    (a temporary file renamed into place), so concurrent writers and readers never see half a
    file. Nothing is ever removed: delete the folder to forget (images are fetched again).
    """

    RETRY_AFTER = 3600.0
    TRANSIENT = frozenset({"timeout", "fetch_error"})

    def __init__(self, root: str | Path):
        self.root = Path(root)

    def _entry_path(self, url: str) -> Path:
        key = hashlib.sha256(url.encode("utf-8", "surrogatepass")).hexdigest()
        return self.root / "urls" / key[:2] / f"{key}.json"

    def _blob_path(self, digest: str) -> Path:
        return self.root / "blobs" / digest[:2] / digest

    def get(self, url: str) -> bytes | ImageFailure | None:
        """The bytes, the failure remembered, or None when the URL must be fetched."""
        try:
            entry = json.loads(self._entry_path(url).read_bytes())
            if entry.get("url") != url:
                return None
            if "blob" in entry:
                return self._blob_path(entry["blob"]).read_bytes()
        except (OSError, ValueError, AttributeError):
            return None
        reason = entry.get("failure")
        if not isinstance(reason, str):
            return None
        if reason in self.TRANSIENT and time.time() - float(entry.get("at", 0)) > self.RETRY_AFTER:
            return None
        return ImageFailure(reason, "remembered from an earlier fetch")

    def put(self, url: str, outcome: bytes | ImageFailure) -> None:
        try:
            if isinstance(outcome, ImageFailure):
                if outcome.reason == "refused":
                    return
                entry = {"url": url, "failure": outcome.reason, "at": time.time()}
            else:
                digest = hashlib.sha256(outcome).hexdigest()
                if not self._blob_path(digest).exists():
                    _write_atomically(self._blob_path(digest), outcome)
                entry = {"url": url, "blob": digest}
            _write_atomically(self._entry_path(url), json.dumps(entry).encode())
        except OSError as error:  # a full or read-only disk costs a second fetch, never the encode
            log.warning("image cache %s not written: %s", self.root, error)


class ImageFetcher:
    """Fetches within a policy, through a cache when there is one."""

    def __init__(self, policy: FetchPolicy, cache: ImageCache | None = None, workers: int = 8):
        self.policy = policy
        self.cache = cache
        self.workers = workers

    def get(self, url: str) -> bytes:
        remembered = self.cache.get(url) if self.cache is not None else None
        if isinstance(remembered, bytes):
            return remembered
        if isinstance(remembered, ImageFailure):
            raise remembered
        try:
            outcome: bytes | ImageFailure = fetch(url, self.policy)
        except ImageFailure as failure:
            outcome = failure
        if self.cache is not None:
            self.cache.put(url, outcome)
        if isinstance(outcome, ImageFailure):
            raise outcome
        return outcome

    def get_many(self, urls: Iterable[str]) -> dict[str, bytes | ImageFailure]:
        """Each URL's bytes or failure, fetched side by side (each within its own deadline)."""
        unique = list(dict.fromkeys(urls))

        def outcome(url: str) -> bytes | ImageFailure:
            try:
                return self.get(url)
            except ImageFailure as failure:
                return failure

        if len(unique) <= 1:
            return {url: outcome(url) for url in unique}
        with concurrent.futures.ThreadPoolExecutor(min(self.workers, len(unique)),
                                                   thread_name_prefix="image-fetch") as pool:
            return dict(zip(unique, pool.map(outcome, unique)))
