"""Every encoder the nightly job can train, by name, and how settings configure it.

Adding an encoder is one module and one line here; an i2i route of the same name in
``recall/routes/__init__.py`` then serves its index.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from encoders.base import Encoder
from encoders.tag2vec import Tag2VecEncoder
from recall.settings import Settings

# name -> (class, build from settings)
ENCODERS: dict[str, tuple[type, Callable[[Settings], Encoder]]] = {
    "tag2vec": (Tag2VecEncoder, lambda s: Tag2VecEncoder(
        dim=s.tag2vec_dim, epochs=s.tag2vec_epochs, threads=s.threads, seed=s.seed)),
}


def build_encoder(name: str, settings: Settings) -> Encoder:
    return ENCODERS[name][1](settings)


def load_encoder(name: str, directory: Path) -> Encoder:
    return ENCODERS[name][0].load(directory)
