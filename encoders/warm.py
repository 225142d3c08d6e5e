"""Warm starts of torch encoders (``warm_fit``, ``encoders/base.py``): a new model from a previous one's weights.

The new model is built and initialised as a cold fit builds it, on today's vocabulary (so a warm
and a cold model of one corpus have the same shapes), then takes the previous model's weights:
layers whole, and each table indexed by a vocabulary (tokens, articles, side values) row by row
for the entries both vocabularies hold. A row only today's vocabulary holds keeps its cold start.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import nn


def shared_rows(today: Mapping[str, int], previous: Mapping[str, int]) -> tuple[torch.Tensor, torch.Tensor]:
    """The rows in today's table and in the previous one of every entry both vocabularies hold."""
    both = [entry for entry in today if entry in previous]
    return (torch.tensor([today[e] for e in both], dtype=torch.long),
            torch.tensor([previous[e] for e in both], dtype=torch.long))


def load_warm(model: nn.Module, previous: nn.Module, tables: Mapping[str, tuple[torch.Tensor, torch.Tensor]]) -> None:
    """Copy ``previous``'s parameters into ``model``: those named in ``tables`` (``shared_rows``)
    row by row, every other one whole (a shape that differs raises: the encoders' hyper-parameters
    fix every shape but the tables')."""
    old = previous.state_dict()
    with torch.no_grad():
        for name, tensor in model.state_dict().items():
            if name in tables:
                rows, old_rows = tables[name]
                tensor[rows] = old[name][old_rows]
            else:
                tensor.copy_(old[name])
