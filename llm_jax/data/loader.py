"""A stateless, resumable, multi-host batch loader over an in-memory example pool.

The examples are read as one endless stream: epoch ``e`` is the permutation
``np.random.default_rng([seed, e]).permutation(N)`` of the ``N`` examples, the stream is epoch 0 followed by
epoch 1 and so on, and global batch ``n`` is stream positions ``[n*B, (n+1)*B)`` (it may straddle two
epochs). Every batch is therefore a pure function of ``(seed, step)``:

* resuming needs only the step the trainer already checkpoints, and reproduces the uninterrupted run;
* every host computes the same global batch and keeps its own contiguous slice, so hosts never talk;
* within each epoch every example appears exactly once.

The loader also reports each row's example index and epoch, from which an objective derives per-example
randomness, e.g. RoBERTa's dynamic masking (RoBERTa §4.1: a new mask every time a sequence is fed).
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np


class DeterministicLoader:
    """Global batches as a pure function of ``(seed, step)``; each process reads its slice.

    Args:
      examples: Arrays sharing the leading dimension ``N`` (e.g. ``tokens``, ``mask``).
      global_batch_size: ``B``, rows per step over all processes; divisible by ``process_count``.
      seed: Seeds the per-epoch permutations.
      process_index: This process's index (``jax.process_index()``).
      process_count: Number of processes (``jax.process_count()``).
      shuffle: If False every epoch reads the examples in order (evaluation).

    Raises:
      ValueError: Empty or ragged ``examples``, or a batch size / process layout that does not divide.
    """

    # Permutations kept in memory: a batch touches at most two epochs, and a step loop walks forward.
    _MEMO_EPOCHS = 2

    def __init__(
        self,
        examples: Mapping[str, np.ndarray],
        global_batch_size: int,
        *,
        seed: int,
        process_index: int = 0,
        process_count: int = 1,
        shuffle: bool = True,
    ):
        if not examples:
            raise ValueError("DeterministicLoader needs at least one array in `examples`; got an empty mapping.")
        arrays = {name: np.asarray(value) for name, value in examples.items()}
        for name in ("example_index", "epoch"):
            if name in arrays:
                raise ValueError(f"`examples` may not contain the key {name!r}: the loader adds it to every batch.")
        leading = {name: (a.shape[0] if a.ndim else None) for name, a in arrays.items()}
        if None in leading.values():
            scalar = next(name for name, n in leading.items() if n is None)
            raise ValueError(f"examples[{scalar!r}] is a scalar; every array needs a leading example axis.")
        if len(set(leading.values())) != 1:
            raise ValueError(
                "All example arrays must share the leading (example) dimension; got "
                + ", ".join(f"{name}: {n}" for name, n in leading.items())
                + "."
            )
        n = next(iter(leading.values()))
        if n < 1:
            raise ValueError("DeterministicLoader got 0 examples. Check that the corpus or task produced data.")
        for label, value in (("global_batch_size", global_batch_size), ("process_count", process_count)):
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
                raise ValueError(f"{label} must be a positive integer, got {value!r}.")
        if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
            raise ValueError(f"seed must be a non-negative integer, got {seed!r}.")
        if isinstance(process_index, bool) or not isinstance(process_index, (int, np.integer)):
            raise ValueError(f"process_index must be an integer, got {process_index!r}.")
        if not 0 <= process_index < process_count:
            raise ValueError(f"process_index={process_index} is outside [0, process_count={process_count}).")
        if global_batch_size % process_count:
            raise ValueError(
                f"global_batch_size={global_batch_size} is not divisible by process_count={process_count}: every "
                f"process must get the same number of rows. Use a multiple of {process_count}."
            )
        self._examples = arrays
        self._n = int(n)
        self.global_batch_size = int(global_batch_size)
        self.seed = int(seed)
        self.process_index = int(process_index)
        self.process_count = int(process_count)
        self.shuffle = bool(shuffle)
        self.local_batch_size = self.global_batch_size // self.process_count
        # A cache of pure values, not loader state: results never depend on what was asked before.
        self._permutations: dict[int, np.ndarray] = {}

    def __len__(self) -> int:
        """Number of examples ``N`` in one epoch."""
        return self._n

    def _permutation(self, epoch: int) -> np.ndarray:
        perm = self._permutations.get(epoch)
        if perm is None:
            if self.shuffle:
                perm = np.random.default_rng([self.seed, epoch]).permutation(self._n)
            else:
                perm = np.arange(self._n)
            if len(self._permutations) >= self._MEMO_EPOCHS:
                self._permutations.pop(next(iter(self._permutations)))
            self._permutations[epoch] = perm
        return perm

    def _check_step(self, step: int) -> int:
        if isinstance(step, bool) or not isinstance(step, (int, np.integer)) or step < 0:
            raise ValueError(f"step must be a non-negative integer, got {step!r}.")
        return int(step)

    def _positions(self, step: int) -> np.ndarray:
        """Stream positions of global batch ``step``."""
        step = self._check_step(step)
        start = step * self.global_batch_size
        return np.arange(start, start + self.global_batch_size, dtype=np.int64)

    def _resolve(self, positions: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Stream positions -> (example indices, epochs)."""
        epochs = positions // self._n
        indices = np.empty_like(positions)
        for epoch in np.unique(epochs):
            rows = epochs == epoch
            indices[rows] = self._permutation(int(epoch))[positions[rows] % self._n]
        return indices, epochs

    def global_indices(self, step: int) -> np.ndarray:
        """Example indices (int64 ``[B]``) of global batch ``step``, identical on every process."""
        return self._resolve(self._positions(step))[0]

    def local_batch(self, step: int) -> dict[str, np.ndarray]:
        """This process's rows of global batch ``step``.

        Process ``p`` gets rows ``[p*B/P, (p+1)*B/P)`` of the global batch.

        Args:
          step: The training step (0-based).

        Returns:
          Every example array indexed by the local rows, plus ``"example_index"`` (int64, row into
          ``examples``) and ``"epoch"`` (int64) per row.
        """
        lo = self.process_index * self.local_batch_size
        positions = self._positions(step)[lo : lo + self.local_batch_size]
        indices, epochs = self._resolve(positions)
        batch = {name: array[indices] for name, array in self._examples.items()}
        batch["example_index"] = indices
        batch["epoch"] = epochs
        return batch
