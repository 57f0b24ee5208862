"""Per-group sums of the per-token routing statistics, computed inside the one-pass chunk kernel.

The bootstrap (comparison.py) needs, per group of tokens (groups.py), the sums over its tokens of each per-token
statistic of routing.py, per sublayer: GROUP_FEATURES = locality, long_range, embedding, entropy,
norm_entropy, jump, top_embedding (0 where a statistic is undefined) and norm_entropy_n (the tokens where
norm_entropy is defined). The chunk kernel (routing_chunk.py) already works through the shares p = a / Z
block by block, and holds per token and row the entropy and the winning top-source code. So:

- share-linear statistics (locality, long_range, embedding) are masked sums of the per-group share sums:
  a block whose tokens are all in one group (the usual case: documents and token blocks are contiguous)
  adds its share sum, which the kernel needs anyway; a block that spans groups adds its rows by group
  (index_add over only the groups in it);
- entropy, norm_entropy = entropy / log(#sources), and the jump / top-embedding flags (looked up by the
  winning code) are per-token [T, g] values summed by group once per chunk.
Rows without sources stay 0.
"""
from __future__ import annotations

import numpy as np
import torch

GROUP_FEATURES = ("locality", "long_range", "embedding", "entropy", "norm_entropy", "jump", "top_embedding",
                  "norm_entropy_n")
SHARE_LINEAR = 3  # the first three features: masked sums of the shares


def _sum_by_group(x: torch.Tensor, local: np.ndarray, n_groups: int) -> torch.Tensor:
    """x [T, ...] summed over the tokens of each group (local [T] in 0 .. n_groups - 1) -> [n_groups, ...]."""
    if n_groups == 1:
        return x.sum(0, keepdim=True)
    out = torch.zeros(n_groups, *x.shape[1:], dtype=x.dtype)
    return out.index_add_(0, torch.from_numpy(local), x)


class GroupPlan:
    """Per-group sums for a chunk kernel's [g, w] layout of rows with sources (module docstring). Built once per
    kernel; read-only, so worker threads may share it. rows [g]: their positions among n_slots; valid,
    is_embedding, nearest, long_range [g, w]: source masks (nearest / long_range None without distances);
    rank [g, w]: each source's tie rank (the kernel's codes are row * (w + 2) + rank); log_n [g]."""

    def __init__(self, rows: np.ndarray, n_slots: int, valid: np.ndarray, is_embedding: np.ndarray,
                 nearest: np.ndarray | None, long_range: np.ndarray | None, rank: np.ndarray, log_n: np.ndarray):
        g, w = valid.shape
        self.rows, self.n_slots = rows, n_slots
        none = np.zeros_like(valid)
        masks = [none if nearest is None else nearest, none if long_range is None else long_range, is_embedding]
        self.masks = torch.from_numpy(np.stack(masks).astype(np.float64))  # [3, g, w]
        # flag of the source holding each code: [g * (w + 2)]
        jump = np.zeros((g, w + 2), dtype=np.float32)
        emb = np.zeros((g, w + 2), dtype=np.float32)
        r, s = np.nonzero(valid)
        if long_range is not None:
            jump[r, rank[r, s]] = long_range[r, s]
        emb[r, rank[r, s]] = is_embedding[r, s]
        self.flags_by_code = torch.from_numpy(np.stack([jump.ravel(), emb.ravel()], 1))  # [g * (w + 2), 2]
        self.defined = np.isfinite(log_n)  # [g] where norm_entropy is defined
        self.log_n = torch.from_numpy(np.where(self.defined, log_n, 1.0))

    def add_shares(self, shares: torch.Tensor, local: np.ndarray, linear: torch.Tensor) -> torch.Tensor:
        """Add one block's share-linear statistics into linear [G, 3, g] (float64) by group (shares [B, g, w];
        local [B]: each token's group within the chunk); returns the block's share sum [g, w]."""
        first = local[0]
        if local[-1] == first and (local == first).all():  # one group: its share sum is the block's
            total = shares.sum(0)
            linear[first] += torch.einsum("gw,mgw->mg", total.double(), self.masks)
            return total
        ids, inverse = np.unique(local, return_inverse=True)
        part = _sum_by_group(shares.view(len(local), -1), inverse.ravel(), len(ids))  # [G_b, g * w]
        part = part.view(len(ids), *shares.shape[1:])  # [G_b, g, w]
        linear[torch.from_numpy(ids)] += torch.einsum("Ggw,mgw->Gmg", part.double(), self.masks)
        return part.sum(0)

    def finish(self, uniq: np.ndarray, local: np.ndarray, linear: torch.Tensor, entropy: torch.Tensor,
               code: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
        """The chunk's per-group sums: (group numbers uniq [G], sums [G, len(GROUP_FEATURES), n_slots]).

        local [T]: each token's index into uniq; linear [G, 3, g]: from add_shares; entropy [T, g]: H per
        token; code [T, g] int32: the kernel's row-and-winning-rank codes."""
        G, g = len(uniq), len(self.rows)
        t = entropy.shape[0]
        flags = self.flags_by_code[code.view(-1).long()].view(t, g, 2)  # [T, g, (jump, top_embedding)]
        per_token = torch.cat([entropy.unsqueeze(-1), flags], -1).double()  # [T, g, 3]
        summed = _sum_by_group(per_token, local, G)  # [G, g, 3]
        ent = summed[..., 0]
        counts = np.bincount(local, minlength=G).astype(np.float64) if G > 1 else np.array([float(t)])
        out = np.zeros((G, len(GROUP_FEATURES), self.n_slots))
        out[:, :SHARE_LINEAR, self.rows] = linear.numpy()
        out[:, 3, self.rows] = ent.numpy()
        out[:, 4, self.rows] = np.where(self.defined, (ent / self.log_n).numpy(), 0.0)
        out[:, 5, self.rows] = summed[..., 1].numpy()
        out[:, 6, self.rows] = summed[..., 2].numpy()
        out[:, 7, self.rows] = counts[:, None] * self.defined
        return uniq, out
