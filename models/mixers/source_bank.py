"""A depth mixer's sources kept in one buffer, and weighted sums over them that never copy a source.

Sources v_0, v_1, ... [batch, tokens, d] are written once into a buffer [batch, tokens, capacity, d]; a mix
with weights W [batch, tokens, rows, n] reads the first n of them through a view. Each row r is one consumer
(a sublayer's input, or the final mixer), and rows are numbered in the order the mixes happen.

Under autograd the backward pass is written here by hand, because the obvious formulation (stack the sources,
then matmul) copies every source into every mix and keeps each copy for backward: O(L^2) copies and memory for
Full AttnRes. With out_r = sum_i W[r, i] v_i and g_r = dLoss/dout_r:
    dLoss/dW[r, i] = <g_r, v_i>          computed by the mix's own backward, reading the buffer;
    dLoss/dv_i     = sum_r W[r, i] g_r   computed once per source, when all of its consumers are done.
Each mix's backward stores its g rows in a shared buffer; each source's `_Enter` node then sums them. It runs
after its consumers because every mix takes the handle of each source it reads as an input; a handle is an
empty tensor, so passing it costs nothing. Double backward is not supported.
"""
from __future__ import annotations

import threading
import weakref

import torch

from .row_mix import mix_rows
from .tracking import tracked


class SourceBank:
    def __init__(self, capacity: int, rows: int):
        """capacity: sources at most; rows: consumer rows expected per forward (more are allowed, at a cost)."""
        self.capacity, self.rows = capacity, rows
        self.size = 0  # sources appended
        self.used_rows = 0  # consumer rows mixed so far
        self.values: torch.Tensor | None = None  # [batch, tokens, capacity, d]
        # Autograd bookkeeping, used only when a source or a weight needs a gradient.
        self.weights: torch.Tensor | None = None  # [batch, tokens, rows, capacity], zero where a row reads less
        self.grads: torch.Tensor | None = None  # g [batch, tokens, rows, d]
        # Which backward pass (autograd graph task) wrote each row: with retain_graph a later pass may reach
        # fewer readers, and a row left from an earlier pass must then count as zero.
        self.grad_task: list[int | None] = [None] * rows
        self.first_reader: list[int] = []  # first row that can read source i
        self.handles: list[torch.Tensor] = []

    def _allocate(self, like: torch.Tensor) -> None:
        if self.values is None:
            self.values = like.new_empty(*like.shape[:-1], self.capacity, like.shape[-1])

    def next_slot(self, like: torch.Tensor) -> torch.Tensor:
        """The buffer view [batch, tokens, d] the next source will occupy. A caller that computes that source
        without autograd may write it there (`out=`); `append` then copies nothing."""
        self._allocate(like)
        return self.values[..., self.size, :]

    def append(self, value: torch.Tensor) -> None:
        self._allocate(value)
        self.first_reader.append(self.used_rows)
        if tracked(value):
            self.handles.append(_Enter.apply(value, self, self.size))
        else:
            slot = self.values[..., self.size, :]
            if not _same_view(value, slot):
                slot.copy_(value.detach())
        self.size += 1

    def mix(self, weights: torch.Tensor) -> torch.Tensor:
        """sum_i weights[..., r, i] v_i over the first n = weights.shape[-1] sources -> [batch, tokens, rows, d]."""
        return self._mix(weights, each=False)

    def mix_each(self, weights: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """`mix`, returned as one contiguous [batch, tokens, d] tensor per row. Under autograd each row's gradient
        then goes straight to the bank, where unbinding the joint result would stack the rows' gradients."""
        return self._mix(weights, each=True)

    def _mix(self, weights: torch.Tensor, each: bool) -> torch.Tensor | tuple[torch.Tensor, ...]:
        if tracked(weights) or (self.handles and torch.is_grad_enabled()):
            return _Mix.apply(weights, self, each, *self.handles[: weights.shape[-1]])
        return _mix_sources(weights, self.values, each)

    def close(self) -> None:
        """No more mixes this forward pass. Drops the handles: each reaches back through the autograd graph to
        the mixes that hold this bank, a cycle that would keep the bank's buffers alive until the garbage
        collector runs; the mixes already hold the handles they need."""
        self.handles = []

    def _register_rows(self, weights: torch.Tensor) -> int:
        if self.weights is None:
            self.weights = weights.new_zeros(*weights.shape[:-2], self.rows, self.capacity)
        first, rows = self.used_rows, weights.shape[-2]
        if first + rows > self.rows:  # more mixes than planned (a hook intervened): grow, rarely
            grown = self.weights.new_zeros(*self.weights.shape[:-2], 2 * (first + rows), self.capacity)
            grown[..., :first, :] = self.weights[..., :first, :]
            self.weights, self.rows = grown, grown.shape[-2]
            self.grad_task += [None] * (self.rows - len(self.grad_task))
        self.weights[..., first : first + rows, : weights.shape[-1]] = weights
        self.used_rows += rows
        return first

    def _store_grads(self, first: int, grads: torch.Tensor | list[torch.Tensor | None]) -> torch.Tensor:
        """Write g of rows first.. (one [batch, tokens, rows, d], or one [batch, tokens, d] per row with None for
        zero) into the buffer; returns those rows as a view of it [batch, tokens, rows, d]."""
        joint = isinstance(grads, torch.Tensor)
        rows = grads.shape[-2] if joint else len(grads)
        if self.grads is None:  # not zero-filled: a row's gradient is written whole or counted as zero
            like = grads if joint else next(g for g in grads if g is not None)
            lead = like.shape[:-2] if joint else like.shape[:-1]  # [batch, tokens]
            shape = (*lead, self.rows, like.shape[-1])
            self.grads = _SPARE_GRADIENT_BUFFERS.take(shape, like)
            weakref.finalize(self, _SPARE_GRADIENT_BUFFERS.give, self.grads)
        if joint:
            self.grads[..., first : first + rows, :] = grads
        else:
            for row, grad in enumerate(grads, start=first):
                self.grads[..., row, :] = 0 if grad is None else grad
        self.grad_task[first : first + rows] = [torch._C._current_graph_task_id()] * rows
        return self.grads[..., first : first + rows, :]

    def _source_grad(self, slot: int) -> torch.Tensor | None:
        if self.grads is None:  # no consumer of this bank took part in the backward pass
            return None
        first = self.first_reader[slot]
        task = torch._C._current_graph_task_id()
        for row in range(first, self.used_rows):  # a reader outside this backward pass contributes zero
            if self.grad_task[row] != task:
                self.grads[..., row, :] = 0
                self.grad_task[row] = task
        # contiguous: a strided row vector sends the batched matmul down a slow per-token path
        weights = self.weights[..., first : self.used_rows, slot].contiguous()  # [batch, tokens, readers]
        grads = self.grads[..., first : self.used_rows, :]  # [batch, tokens, readers, d]
        return mix_rows(weights.unsqueeze(-2), grads).squeeze(-2)  # [batch, tokens, d]


def _mix_sources(weights: torch.Tensor, values: torch.Tensor, each: bool) -> torch.Tensor | tuple[torch.Tensor, ...]:
    """[batch, tokens, rows, d] from the first n = weights.shape[-1] sources, or with `each` rows x [b, t, d]."""
    sources = values[..., : weights.shape[-1], :]
    return mix_rows(weights, sources, rows_first=True).unbind(0) if each else mix_rows(weights, sources)


def _same_view(a: torch.Tensor, b: torch.Tensor) -> bool:
    return a.data_ptr() == b.data_ptr() and a.shape == b.shape and a.stride() == b.stride() and a.dtype == b.dtype


class _Enter(torch.autograd.Function):
    """Writes a source into the bank; its backward hands the source the gradient summed over its readers."""

    @staticmethod
    def forward(ctx, value: torch.Tensor, bank: SourceBank, slot: int) -> torch.Tensor:
        bank.values[..., slot, :] = value
        # A weak reference: the bank holds the handle, whose node this is, so a strong one would make a cycle
        # that keeps the bank's buffers alive until the garbage collector runs. Every mix reading the source
        # holds the bank strongly, and this backward runs only after theirs.
        ctx.bank, ctx.slot = weakref.ref(bank), slot
        ctx.set_materialize_grads(False)
        return value.new_empty(0)  # the handle

    @staticmethod
    def backward(ctx, _handle_grad):
        return ctx.bank()._source_grad(ctx.slot), None, None


class _Mix(torch.autograd.Function):
    @staticmethod
    def forward(ctx, weights: torch.Tensor, bank: SourceBank, each: bool, *handles: torch.Tensor):
        ctx.bank, ctx.each, ctx.n_handles, ctx.n_sources = bank, each, len(handles), weights.shape[-1]
        ctx.first_row = bank._register_rows(weights)
        ctx.set_materialize_grads(False)
        return _mix_sources(weights, bank.values, each)

    @staticmethod
    def backward(ctx, *grads: torch.Tensor | None):
        # one [batch, tokens, rows, d], or with `mix_each` one [batch, tokens, d] per row; None: no gradient
        if all(g is None for g in grads):
            return (None,) * (3 + ctx.n_handles)
        stored = ctx.bank._store_grads(ctx.first_row, list(grads) if ctx.each else grads[0])
        weights_grad = None
        if ctx.needs_input_grad[0]:
            sources = ctx.bank.values[..., : ctx.n_sources, :]  # [batch, tokens, n, d]
            weights_grad = stored @ sources.transpose(-1, -2)  # [batch, tokens, rows, n]
        return (weights_grad, None, None, *([None] * ctx.n_handles))


class _SpareBuffers:
    """Gradient buffers of banks that are gone, kept for the next bank of the same shape.

    A bank's gradient buffer holds a row per reader ([batch, tokens, readers, d], 69 MB for Full or Block AttnRes
    at d=256 x 32 sublayers x 2048 tokens). Above glibc's mmap threshold, the allocator maps such a buffer afresh
    for every backward pass and the first writes page-fault through all of it: about 30 ms per training step here.
    At most `keep` buffers wait here between passes; nothing outside the bank ever sees one.
    """

    def __init__(self, keep: int = 2):
        self.keep = keep
        self.spare: list[torch.Tensor] = []
        self.lock = threading.Lock()  # finalizers run wherever the garbage collector does

    def take(self, shape: tuple[int, ...], like: torch.Tensor) -> torch.Tensor:
        with self.lock:
            for i, buffer in enumerate(self.spare):
                if buffer.shape == shape and buffer.dtype == like.dtype and buffer.device == like.device:
                    return self.spare.pop(i)
        return like.new_empty(shape)

    def give(self, buffer: torch.Tensor) -> None:
        with self.lock:
            self.spare = [buffer, *self.spare][: self.keep]


_SPARE_GRADIENT_BUFFERS = _SpareBuffers()
