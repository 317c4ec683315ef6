"""DeterministicLoader: batches are a pure function of (seed, step), epochs are permutations, hosts agree."""

import numpy as np
import pytest

from llm_jax.data import DeterministicLoader

N = 10


def _examples(n=N):
    return {
        "tokens": np.arange(n * 3, dtype=np.int32).reshape(n, 3),
        "label": np.arange(n, dtype=np.int32) * 7,
    }


def test_pure_function_of_seed_and_step():
    a = DeterministicLoader(_examples(), 4, seed=3)
    b = DeterministicLoader(_examples(), 4, seed=3)
    # Asking in a different order (a resumed run jumps straight to its step) changes nothing.
    late_first = [b.global_indices(s) for s in (9, 0, 5)]
    np.testing.assert_array_equal(late_first[0], a.global_indices(9))
    np.testing.assert_array_equal(late_first[1], a.global_indices(0))
    np.testing.assert_array_equal(late_first[2], a.global_indices(5))
    for step in range(12):
        np.testing.assert_array_equal(a.global_indices(step), b.global_indices(step))
    other = DeterministicLoader(_examples(), 4, seed=4)
    assert any((a.global_indices(s) != other.global_indices(s)).any() for s in range(5))


@pytest.mark.parametrize("batch", [1, 3, 4, 10, 25])
def test_every_example_once_per_epoch(batch):
    loader = DeterministicLoader(_examples(), batch, seed=0)
    epochs = 4
    steps = -(-epochs * N // batch)
    stream = np.concatenate([loader.global_indices(s) for s in range(steps)])[: epochs * N]
    orders = stream.reshape(epochs, N)
    for order in orders:
        np.testing.assert_array_equal(np.sort(order), np.arange(N))
    # Each epoch has its own permutation.
    assert len({tuple(order) for order in orders}) == epochs


def test_batches_straddle_epochs():
    loader = DeterministicLoader(_examples(), 4, seed=1)
    batch = loader.local_batch(2)  # stream positions 8..11: two rows of epoch 0, two of epoch 1
    np.testing.assert_array_equal(batch["epoch"], [0, 0, 1, 1])
    # The documented stream: epoch e is default_rng([seed, e]).permutation(N).
    stream = np.concatenate([np.random.default_rng([1, e]).permutation(N) for e in range(2)])
    np.testing.assert_array_equal(batch["example_index"], stream[8:12])
    np.testing.assert_array_equal(loader.global_indices(0), stream[0:4])
    np.testing.assert_array_equal(loader.global_indices(1), stream[4:8])


def test_local_batch_rows_and_keys():
    examples = _examples()
    loader = DeterministicLoader(examples, 4, seed=2)
    batch = loader.local_batch(7)
    idx = loader.global_indices(7)
    np.testing.assert_array_equal(batch["example_index"], idx)
    assert batch["example_index"].dtype == np.int64 and batch["epoch"].dtype == np.int64
    for key in examples:
        np.testing.assert_array_equal(batch[key], examples[key][idx])
        assert batch[key].dtype == examples[key].dtype
    assert len(loader) == N


@pytest.mark.parametrize("process_count", [2, 4])
def test_process_slices_concatenate_to_the_global_batch(process_count):
    batch_size = 8
    whole = DeterministicLoader(_examples(), batch_size, seed=5)
    parts = [
        DeterministicLoader(_examples(), batch_size, seed=5, process_index=p, process_count=process_count)
        for p in range(process_count)
    ]
    for step in (0, 1, 6):
        locals_ = [part.local_batch(step) for part in parts]
        assert all(len(lb["example_index"]) == batch_size // process_count for lb in locals_)
        expected = whole.local_batch(step)
        for key in expected:
            np.testing.assert_array_equal(np.concatenate([lb[key] for lb in locals_]), expected[key])


def test_no_shuffle_reads_in_order():
    loader = DeterministicLoader(_examples(), 4, seed=0, shuffle=False)
    stream = np.concatenate([loader.global_indices(s) for s in range(5)])
    np.testing.assert_array_equal(stream, np.concatenate([np.arange(N), np.arange(N)]))


def test_validation_errors():
    with pytest.raises(ValueError, match="not divisible by process_count=3"):
        DeterministicLoader(_examples(), 4, seed=0, process_count=3)
    with pytest.raises(ValueError, match="0 examples"):
        DeterministicLoader({"tokens": np.zeros((0, 3))}, 4, seed=0)
    with pytest.raises(ValueError, match="share the leading"):
        DeterministicLoader({"a": np.zeros((3, 2)), "b": np.zeros(4)}, 2, seed=0)
    with pytest.raises(ValueError, match="at least one array"):
        DeterministicLoader({}, 2, seed=0)
    with pytest.raises(ValueError, match="process_index=2 is outside"):
        DeterministicLoader(_examples(), 4, seed=0, process_index=2, process_count=2)
    with pytest.raises(ValueError, match="global_batch_size"):
        DeterministicLoader(_examples(), 0, seed=0)
    with pytest.raises(ValueError, match="example_index"):
        DeterministicLoader({"example_index": np.zeros(3)}, 1, seed=0)
    with pytest.raises(ValueError, match="step"):
        DeterministicLoader(_examples(), 2, seed=0).local_batch(-1)
