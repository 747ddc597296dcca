"""Per-point tokens: what the Perceiver sees of each point (the book, Method: point tokens).

A token is the concatenation of
  xyz (3) | random Fourier features of xyz (2·fourier_freqs) | class embedding |
  source embedding | "behind" embedding | two standardised vote features,
each part after xyz switched off by a zero size (or ``vote_features=False``).
"""

import math

import torch
from torch import nn

from .precision import fp32
from .schema import NUM_BEHIND_CLASSES, NUM_SOURCES, POINT_CLASSES

#: Seed of the Fourier matrix. Its own generator keeps the matrix independent of the
#: global seed; it is a buffer, so a checkpoint carries the matrix it was trained with.
FOURIER_SEED = 0

#: Standardisation of the vote features: (n_views_voted − 2.7) / 1, (vote_frac − 0.5) / 0.25.
VIEWS_MEAN, VIEWS_STD = 2.7, 1.0
FRAC_MEAN, FRAC_STD = 0.5, 0.25


def embed(table: nn.Embedding, ids: torch.Tensor) -> torch.Tensor:
    """table(ids) for integer ids of any width (the batch carries them as uint8 and int16).

    On CUDA as `one_hot_embed`: its backward is a matmul, where the lookup's backward is a
    scatter-add whose atomics collide on a few rows (most points share a class and a source).
    On the CPU the lookup, whose arithmetic the book's runs used.
    """
    return one_hot_embed(table, ids) if ids.is_cuda else table(ids.long())


def one_hot_embed(table: nn.Embedding, ids: torch.Tensor) -> torch.Tensor:
    """table(ids) as one-hot(ids) @ table.weight."""
    one_hot = ids[..., None] == torch.arange(table.num_embeddings, device=ids.device)
    return one_hot.to(table.weight.dtype) @ table.weight


class PointTokenizer(nn.Module):
    """Turns the batch dict of the data contract into tokens [B, S, out_dim].

    Tokens of padded points (``mask`` False) are set to zero, so whatever the padding holds
    (even NaN) cannot leak into the model; attention never reads them anyway.
    """

    def __init__(self, fourier_freqs: int, fourier_scale: float, class_emb_dim: int,
                 source_emb_dim: int, behind_emb_dim: int, vote_features: bool,
                 fourier_seed: int = FOURIER_SEED):
        super().__init__()
        gen = torch.Generator().manual_seed(fourier_seed)
        # Gaussian random Fourier features (Tancik et al. 2020): sin/cos(2π · xyz @ B), B ~ N(0, scale²).
        fourier = torch.randn(3, fourier_freqs, generator=gen) * fourier_scale if fourier_freqs else None
        self.register_buffer("fourier", fourier)
        self.class_emb = nn.Embedding(len(POINT_CLASSES), class_emb_dim) if class_emb_dim else None
        self.source_emb = nn.Embedding(NUM_SOURCES, source_emb_dim) if source_emb_dim else None
        # One slot more than the gestalt classes: any id outside 0..27 (e.g. -1, no vote) lands there.
        self.behind_emb = nn.Embedding(NUM_BEHIND_CLASSES + 1, behind_emb_dim) if behind_emb_dim else None
        self.vote_features = vote_features
        self.out_dim = 3 + 2 * fourier_freqs + class_emb_dim + source_emb_dim + behind_emb_dim + 2 * vote_features

        # A tuple, not a set: the compiled step reads the batch's fields in this order, and a set's
        # order changes with each process's string hashing, which made the step's graph another
        # one in every process, so inductor's cache never served it (the book, Method: training).
        self.fields = ("xyz_norm", "mask", *(("class_id",) if class_emb_dim else ()),
                       *(("source",) if source_emb_dim else ()), *(("behind",) if behind_emb_dim else ()),
                       *(("n_views_voted", "vote_frac") if vote_features else ()))

    def forward(self, batch: dict) -> torch.Tensor:
        missing = [name for name in self.fields if name not in batch]
        if missing:
            raise ValueError(f"batch lacks field(s) {sorted(missing)} that the tokenizer needs")
        xyz = batch["xyz_norm"].float()
        parts = [xyz]
        if self.fourier is not None:
            # fp32 even under autocast: phases reach ~30 rad, and bf16 would be off by ~0.1 rad.
            with fp32(xyz.device.type):
                phase = (2 * math.pi) * xyz @ self.fourier
            parts += [phase.sin(), phase.cos()]
        if self.class_emb is not None:
            parts.append(embed(self.class_emb, batch["class_id"]))
        if self.source_emb is not None:
            parts.append(embed(self.source_emb, batch["source"]))
        if self.behind_emb is not None:
            behind = batch["behind"]
            known = (behind >= 0) & (behind < NUM_BEHIND_CLASSES)
            parts.append(embed(self.behind_emb, torch.where(known, behind, NUM_BEHIND_CLASSES)))
        if self.vote_features:
            views = (batch["n_views_voted"].float() - VIEWS_MEAN) / VIEWS_STD
            frac = (batch["vote_frac"].float() - FRAC_MEAN) / FRAC_STD
            parts.append(torch.stack([views, frac], dim=-1))
        tokens = torch.cat(parts, dim=-1)
        return tokens.masked_fill(~batch["mask"][..., None], 0.0)
