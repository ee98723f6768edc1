"""Batch iterators: y is x shifted by one, rank strides, exact resume, sliding windows, addition masks."""

import numpy as np
import pytest

from gptkit.data.loaders import AdditionTask, ShardedLoader, SlidingWindowDataset, random_batches
from gptkit.data.prepare import prepare


@pytest.fixture(scope="module")
def char_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("char")
    prepare(["shakespeare"], "char", d, progress=False, num_workers=1)
    return d


@pytest.fixture(scope="module")
def shard_dir(tmp_path_factory, verdict):
    d = tmp_path_factory.mktemp("shards")
    (d / "v.txt").write_text(verdict)
    prepare([str(d / "v.txt")], "gpt2", d / "data", shard_tokens=1500, progress=False, num_workers=1)
    return d / "data"


def _split_tokens(d, names):
    return np.concatenate([np.fromfile(d / n, dtype=np.uint16) for n in names]).astype(np.int64)


def test_random_batches_shift_and_shapes(char_dir):
    data = np.fromfile(char_dir / "train.bin", dtype=np.uint16).astype(np.int64)
    it = random_batches(char_dir, "train", batch_size=4, block_size=8, seed=1)
    windows = np.lib.stride_tricks.sliding_window_view(data, 9)
    for _ in range(5):
        x, y = next(it)
        assert x.shape == y.shape == (4, 8) and x.dtype == np.int64
        assert (x[:, 1:] == y[:, :-1]).all()
        for row_x, row_y in zip(x, y):  # each row is a real 9-token window of the split
            assert (windows == np.append(row_x, row_y[-1])).all(axis=1).any()


def test_random_batches_seeded_and_resumable(char_dir):
    a = random_batches(char_dir, "val", 3, 16, seed=7)
    b = random_batches(char_dir, "val", 3, 16, seed=7)
    assert all((next(a)[0] == next(b)[0]).all() for _ in range(3))
    state = a.state_dict()
    expected = [next(a) for _ in range(3)]
    c = random_batches(char_dir, "val", 3, 16, seed=999)
    c.load_state_dict(state)
    assert all((x == e[0]).all() and (y == e[1]).all() for (x, y), e in zip((next(c) for _ in range(3)), expected))


def test_block_size_larger_than_split(char_dir):
    with pytest.raises(ValueError, match=r"val split has 111,540 tokens, fewer than the 200,001"):
        random_batches(char_dir, "val", 2, 200_000)
    with pytest.raises(ValueError, match="split must be one of"):
        random_batches(char_dir, "test", 2, 8)


def test_sharded_ranks_disjoint_and_cover(shard_dir):
    import json

    files = [f["name"] for f in json.loads((shard_dir / "meta.json").read_text())["splits"]["train"]["files"]]
    B, T, W = 2, 16, 3
    loaders = [ShardedLoader(shard_dir, "train", B, T, rank=r, world_size=W) for r in range(W)]
    seen = []
    shard0 = np.fromfile(shard_dir / files[0], dtype=np.uint16).astype(np.int64)
    steps = (len(shard0) - 1) // (B * T * W)
    for step in range(steps):
        for r, ld in enumerate(loaders):
            x, y = ld.__next__()
            assert (x.reshape(-1)[1:] == y.reshape(-1)[:-1]).all()
            start = (step * W + r) * B * T
            assert (x.reshape(-1) == shard0[start : start + B * T]).all()
            seen.append(start)
    assert sorted(seen) == list(range(0, steps * W * B * T, B * T))  # disjoint, contiguous cover
    assert all(ld.shard == 1 for ld in loaders)  # all ranks move on to the next shard together


def test_sharded_state_round_trip(shard_dir):
    a = ShardedLoader(shard_dir, "train", 2, 32, rank=1, world_size=2)
    for _ in range(17):
        next(a)
    state = a.state_dict()
    expected = [next(a) for _ in range(10)]
    b = ShardedLoader(shard_dir, "train", 2, 32, rank=1, world_size=2)
    b.load_state_dict(state)
    for e in expected:
        x, y = next(b)
        assert (x == e[0]).all() and (y == e[1]).all()


@pytest.mark.parametrize("old, new", [(2, 1), (1, 2), (2, 3)])
def test_sharded_resume_in_another_layout_continues_the_same_windows(shard_dir, old, new):
    """A step of `old` ranks reads the windows at base, base + BT, ... in rank order; a resume with `new` ranks goes on
    from the saved step's end: rank r of the new layout starts at base + r BT (and the windows go on in order)."""
    B, T = 2, 32
    saved = [ShardedLoader(shard_dir, "train", B, T, rank=r, world_size=old) for r in range(old)]
    for _ in range(5):
        for ld in saved:
            next(ld)
    cont = ShardedLoader(shard_dir, "train", B, T, world_size=1)  # one rank reading on: the windows in order
    cont.load_state_dict({"shard": 0, "pos": 5 * old * B * T})
    expected = [next(cont)[0] for _ in range(new)]
    states = [ld.state_dict() for ld in saved]
    for r in range(new):
        ld = ShardedLoader(shard_dir, "train", B, T, rank=r, world_size=new)
        ld.load_state_dict(ld.resume_state(states, r))
        assert (next(ld)[0] == expected[r]).all()


def test_sharded_resume_refuses_a_shard_another_layout_skips(shard_dir):
    """The short last shard (112 tokens) holds a step of 3 ranks of 1 x 32 (97 tokens) but not one of 4 (129)."""
    saved = [ShardedLoader(shard_dir, "train", 1, 32, rank=r, world_size=3) for r in range(3)]
    while saved[0].shard != 3:
        for ld in saved:
            next(ld)
    states = [ld.state_dict() for ld in saved]
    ld = ShardedLoader(shard_dir, "train", 1, 32, rank=0, world_size=4)
    with pytest.raises(ValueError, match=r"the saved data position is in \S+, which is too small for one step of 4 "
                       r"process\(es\); resume with 3"):
        ld.resume_state(states, 0)
    assert ld.resume_state([ld.state_dict()] * 4, 2) == ld.state_dict()  # the same layout: each rank its own


def test_sharded_wraps_and_skips_short_last_shard(shard_dir):
    ld = ShardedLoader(shard_dir, "train", 4, 32)  # shards of 1500, 1500, 1500 and 112 < 129 tokens
    assert len(ld.paths) == 3
    first = next(ld)[0]
    for _ in range(3 * 11 - 1):  # (1500 - 1) // 128 = 11 batches per shard
        next(ld)
    assert ld.shard == 0 and (next(ld)[0] == first).all()


def test_sharded_bad_input(shard_dir):
    with pytest.raises(ValueError, match="rank must be in"):
        ShardedLoader(shard_dir, "train", 2, 8, rank=2, world_size=2)
    with pytest.raises(ValueError, match="fewer than the"):
        ShardedLoader(shard_dir, "train", 64, 64)


@pytest.mark.parametrize("n, m, s", [(10, 4, 3), (10, 4, 1), (100, 8, 8), (9, 4, 4), (5, 4, 2)])
def test_sliding_window_counts_and_shift(n, m, s):
    ds = SlidingWindowDataset(np.arange(n), max_length=m, stride=s)
    # Raschka's GPTDatasetV1 loops i over range(0, n - m, s); its count is the issue's
    # (len - max_length) // stride + 1 with len = n - 1 input positions.
    assert len(ds) == len(range(0, n - m, s)) == (n - 1 - m) // s + 1
    for k, (x, y) in enumerate(ds):
        assert (x == np.arange(k * s, k * s + m)).all() and (y == x + 1).all()


def test_sliding_window_docstring_example_and_errors():
    ds = SlidingWindowDataset(list(range(10)), 4, 3)
    assert [x.tolist() for x, _ in ds] == [[0, 1, 2, 3], [3, 4, 5, 6]]
    with pytest.raises(ValueError, match="too few for max_length=4"):
        SlidingWindowDataset([1, 2, 3, 4], 4, 1)
    with pytest.raises(IndexError):
        ds[2]


def test_addition_example_and_masks():
    task = AdditionTask(ndigit=1)
    x, y = task.example(3, 4)
    assert x.tolist() == [3, 10, 4, 11, 7] and y.tolist() == [-1, -1, -1, 7, 0]
    task2 = AdditionTask(ndigit=2)
    x, y = task2.example(47, 85)  # 47+85=132 -> "47+85=231"
    assert "".join(task2.VOCAB[i] for i in x) + task2.VOCAB[y[-1]] == "47+85=231"
    assert task2.decode_answer([2, 3, 1]) == 132


def test_addition_batches_are_correct_sums_and_seeded():
    a, b = AdditionTask(3, seed=5), AdditionTask(3, seed=5)
    xa, ya = a.batch(64)
    xb, _ = b.batch(64)
    assert (xa == xb).all() and xa.shape == (64, a.block_size)
    for x, y in zip(xa, ya):
        n = 3
        assert (y[: 2 * n + 1] == -1).all() and (y[2 * n + 1 :] >= 0).all()
        lhs = int("".join(map(str, x[:n]))) + int("".join(map(str, x[n + 1 : 2 * n + 1])))
        assert a.decode_answer(list(y[2 * n + 1 :])) == lhs


def test_sliding_window_is_a_torch_dataset():
    torch = pytest.importorskip("torch", reason="torch is not installed (CI installs it)")
    ds = SlidingWindowDataset(np.arange(50), max_length=8, stride=4)
    batches = list(torch.utils.data.DataLoader(ds, batch_size=4, shuffle=False))
    assert len(batches) == 3 and batches[0][0].shape == (4, 8) and batches[0][0].dtype == torch.int64
    assert torch.equal(batches[0][1], batches[0][0] + 1)
