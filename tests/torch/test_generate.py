"""The generation engine (gptkit.torch.generate on gptkit.generate.engine): the engine equals the uncached model (greedy
ids at batch 1 and for every row of a mixed-length batch, learned and rotary positions), the window slide equals an
uncached forward of what the engine docstring says the model sees, per-row seeded sampling is independent of the batch,
top-k/top-p masks, the sampler's distribution, stop tokens, max tokens, stop strings, compiled == eager."""

import functools
import math

import pytest
import torch

from gptkit.config import GPTConfig
from gptkit.generate.engine import Request, generate_ids
from gptkit.generate.engine import mix32 as mix32_ref
from gptkit.generate.text import TextStream, generate_text
from gptkit.tokenizer.simple import CharTokenizer, WordTokenizer
from gptkit.torch.generate import Engine, filter_logits, generate, mix32, sample_rows, uniform
from gptkit.torch.model import GPT, Bigram

NEG = float("-inf")


def test_filter_top_k_docstring_example():
    out = filter_logits(torch.tensor([[3.0, 2.0, 1.0, 0.0]]), top_k=2)
    assert out.tolist() == [[3.0, 2.0, NEG, NEG]]


def test_filter_top_k_keeps_ties_at_the_kth():
    assert torch.isfinite(filter_logits(torch.tensor([[3.0, 2.0, 2.0, 0.0]]), top_k=2)).tolist() == [
        [True, True, True, False]]


def test_filter_top_p():
    probs = torch.tensor([[0.5, 0.3, 0.15, 0.05]])
    logits = probs.log()
    # nucleus 0.7: 0.5 alone is short of 0.7, 0.5 + 0.3 reaches it -> two tokens kept
    assert torch.isfinite(filter_logits(logits, top_p=0.7)).tolist() == [[True, True, False, False]]
    assert torch.isfinite(filter_logits(logits, top_p=0.8)).tolist() == [[True, True, False, False]]
    assert torch.isfinite(filter_logits(logits, top_p=0.81)).tolist() == [[True, True, True, False]]
    assert torch.isfinite(filter_logits(logits, top_p=0.1)).tolist() == [[True, False, False, False]]  # always one
    shuffled = logits[:, [2, 0, 3, 1]]
    assert torch.isfinite(filter_logits(shuffled, top_p=0.7)).tolist() == [[False, True, False, True]]
    assert torch.isfinite(filter_logits(logits, top_p=1.0)).all()


def test_mix32_equals_the_reference_hash():
    # lowbias32 (hash-prospector's best two-multiply 32-bit hash); the tensor version splits the multiply to stay in
    # int64
    xs = [0, 1, 2, 0xFFFF, 0x10000, 0x7FFFFFFF, 0x80000000, 0xFFFFFFFF] + list(range(12345, 2**32, 2**32 // 997))
    assert mix32(torch.tensor(xs)).tolist() == [mix32_ref(x) for x in xs]
    assert mix32_ref(1) == 1753845952


class _Rows:
    def __init__(self, B, V, temperature=1.0, top_k=None, top_p=None, seed=0, count=0):
        self.temperature = torch.full((B,), float(temperature))
        self.top_k, self.top_p = torch.full((B,), top_k or V), torch.full((B,), float(top_p or 1.0))
        self.seed, self.count = torch.full((B,), seed), torch.arange(count, count + B)
        self.vocab_hash = mix32(torch.arange(V))


def test_temperature_zero_and_top_k_one_are_argmax():
    logits = torch.randn(4, 10)
    assert torch.equal(sample_rows(logits, _Rows(4, 10, temperature=0)), logits.argmax(-1))
    assert torch.equal(sample_rows(logits, _Rows(4, 10, top_k=1)), logits.argmax(-1))


def test_samples_only_allowed_tokens():
    logits = torch.zeros(200, 10)
    logits[:, 3] = logits[:, 7] = 5.0
    assert set(sample_rows(logits, _Rows(200, 10, top_k=2)).tolist()) == {3, 7}


def test_gumbel_max_draws_follow_softmax():
    """40,000 draws (different token numbers) from softmax(logits / T): every frequency within 4.5 sigma."""
    logits, T, n = torch.tensor([[2.0, 1.0, 0.5, 0.0, -1.0]]), 0.7, 40_000
    draws = sample_rows(logits.expand(n, 5), _Rows(n, 5, temperature=T, seed=3))
    freq = torch.bincount(draws, minlength=5).float() / n
    p = torch.softmax(logits[0] / T, dim=-1)
    assert ((freq - p).abs() <= 4.5 * (p * (1 - p) / n).sqrt()).all(), (freq, p)
    u = uniform(torch.tensor([1, 2]), torch.tensor([0, 0]), mix32(torch.arange(50_000)))
    assert 0 < u.min() and u.max() < 1 and abs(u.mean() - 0.5) < 0.01


@pytest.mark.parametrize("kwargs,match", [
    ({"temperature": -1}, "temperature"), ({"top_k": 0}, "top_k"), ({"top_p": 0.0}, "top_p"), ({"top_p": 1.5}, "top_p"),
    ({"seed": -1}, "seed"), ({"seed": 2**63}, "2\\*\\*63 - 1"), ({"max_new_tokens": -1}, "max_new_tokens"),
    ({"prompt": ()}, "at least one prompt"),
])
def test_bad_requests(kwargs, match):
    with pytest.raises(ValueError, match=match):
        Request(**({"prompt": (1,)} | kwargs))


@functools.lru_cache(maxsize=None)
def _trained(pos, block_size, vocab_size, tie_weights):
    """A tiny model trained for 100 steps on x[t+1] = (x[t] + x[t-1]) mod V, so that its greedy text depends on the
    context (a random model repeats one token) and rows can be told apart. One thread: the weights must not depend
    on the thread count an earlier test left (float sums run in another order), or the rows may stop differing."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return _train_tiny(pos, block_size, vocab_size, tie_weights)
    finally:
        torch.set_num_threads(threads)


def _train_tiny(pos, block_size, vocab_size, tie_weights):
    torch.manual_seed(0)
    m = GPT(GPTConfig(vocab_size=vocab_size, block_size=block_size, n_layer=2, n_head=2, n_embd=32, pos=pos,
                      tie_weights=tie_weights))
    opt, g = torch.optim.AdamW(m.parameters(), lr=1e-2), torch.Generator().manual_seed(0)
    for _ in range(100):
        seq = list(torch.randint(0, vocab_size, (2, 32), generator=g))
        while len(seq) <= block_size:
            seq.append((seq[-1] + seq[-2]) % vocab_size)
        seq = torch.stack(seq, 1)
        loss = m(seq[:, :-1].contiguous(), seq[:, 1:].contiguous())[1]
        opt.zero_grad()
        loss.backward()
        opt.step()
    return m.eval()


def _model(pos="learned", block_size=16, vocab_size=20, tie_weights=True):
    return _trained(pos, block_size, vocab_size, tie_weights)


def _uncached_greedy(m, prompt, n):
    """nanoGPT's loop without a cache, within block_size: argmax of the full forward of everything so far."""
    seq = list(prompt)
    for _ in range(n):
        seq.append(int(m(torch.tensor([seq]))[0][0, -1].argmax()))
    return seq[len(prompt):]


def _sliding_reference(m, prompt, n, bs=None):
    """The engine docstring's rule: the model sees ctx; when ctx holds block_size tokens, it keeps the last
    block_size // 2 - 1 before the next token is appended. Returns the ids and the logits of each step."""
    bs = bs or m.config.block_size
    keep = bs // 2
    ctx, ids, logits = list(prompt)[-bs:], [], []
    for _ in range(n):
        logits.append(m(torch.tensor([ctx]))[0][0, -1])
        ids.append(int(logits[-1].argmax()))
        if len(ctx) == bs:
            ctx = ctx[len(ctx) - keep + 1 :]
        ctx.append(ids[-1])
    return ids, logits


@pytest.mark.parametrize("pos", ["learned", "rope"])
def test_greedy_equals_the_uncached_model_alone_and_in_a_mixed_batch(pos):
    m = _model(pos)
    prompts = [[1, 2, 3], [4], [5, 6, 7, 8, 9, 10, 11], [12, 13]]
    want = [_uncached_greedy(m, p, 16 - len(p)) for p in prompts]
    assert len(set(map(tuple, want))) == 4 and max(len(set(w)) for w in want) > 3  # the test can tell rows apart
    for p, w in zip(prompts, want):
        assert generate(m, p, len(w), temperature=0) == w
    requests = [Request(p, len(w), temperature=0) for p, w in zip(prompts, want)]
    assert generate_ids(Engine(m, 4), requests) == want
    assert generate_ids(Engine(m, 3, sync_every=5), requests) == want  # a slot freed mid-run takes the 4th


@pytest.mark.parametrize("pos", ["learned", "rope"])
def test_past_block_size_the_window_slides_as_documented(pos):
    m = _model(pos, block_size=8)
    seen = []
    real_forward = m.forward

    def spy(idx, *a, **kw):
        out = real_forward(idx, *a, **kw)
        if idx.shape[1] == 1:  # a decode step
            seen.append(out[0][0, -1].clone())
        return out

    m.forward = spy
    prompt = [1, 2, 3, 4, 5, 6, 7, 8, 9, 10]  # longer than block_size: the last 8 are seen
    got = generate(m, prompt, 30, temperature=0)
    m.forward = real_forward
    want, logits = _sliding_reference(m, prompt, 30)
    assert got == want
    torch.testing.assert_close(torch.stack(seen), torch.stack(logits[1:]), atol=1e-5, rtol=1e-5)


def test_a_shorter_context_slides_at_its_own_length():
    from gptkit.generate.engine import context_length

    m = _model("rope", block_size=16)
    got = generate_ids(Engine(m, 1, context=8), [Request((1, 2, 3), 30, temperature=0)])[0]
    assert got == _sliding_reference(m, [1, 2, 3], 30, bs=8)[0]
    assert (context_length(1024), context_length(40960), context_length(1024, 256)) == (1024, 4096, 256)
    with pytest.raises(ValueError, match="context must be"):
        Engine(m, 1, context=17)


def test_seeded_rows_give_the_same_tokens_as_alone():
    m = _model("rope", block_size=12)
    requests = [Request((1, 2, 3), 25, 1.0, None, None, 5), Request((4,), 25, 0.9, 5, None, 6),
                Request((7, 8, 9, 10, 11), 10, 1.3, None, 0.8, 7), Request((1, 2, 3), 25, 1.0, None, None, 8),
                Request((2,), 25, 0.0), Request((1, 2, 3), 25, 1.0, None, None, 5)]
    alone = [generate_ids(Engine(m, 1), [r])[0] for r in requests]
    assert alone[0] == alone[5] != alone[3]  # the seed decides
    assert generate_ids(Engine(m, 6), requests) == alone
    assert generate_ids(Engine(m, 4, sync_every=3), requests) == alone


def test_stop_tokens_and_max_tokens_per_row():
    m = _model()
    free = generate(m, [1, 2], 12, temperature=0)
    stop = free[5]
    requests = [Request((1, 2), 12, 0.0, stop_tokens=(stop,)), Request((1, 2), 3, 0.0), Request((1, 2), 0, 0.0)]
    updates = list(Engine(m, 3).run(requests))
    assert generate_ids(Engine(m, 3), requests) == [free[: free.index(stop)], free[:3], []]
    assert {u.key: u.finish for u in updates if u.finish} == {0: "stop", 1: "length", 2: "length"}


def test_compiled_decode_equals_eager():
    m = _model("rope", block_size=32)
    requests = [Request((1, 2, 3), 40, 0.0), Request((4, 5), 40, 0.9, 5, 0.9, 3)]  # spans 16 and 32, a slide
    eager = generate_ids(Engine(m, 2, compile=False), requests)
    engine = Engine(m, 2, compile=True)
    assert generate_ids(engine, requests) == eager
    assert engine._compiled  # the compiled step ran: no fallback to eager on the way


def test_the_cuda_graph_branch_equals_eager_on_a_cpu():
    """The settings the engine compiles with on CUDA (mode="reduce-overhead", static addresses for the cache and the
    rows' state, outputs cloned) run here on a CPU, where inductor skips only the graph capture itself."""
    m = _model("learned", block_size=16)
    requests = [Request((1, 2, 3), 20, 0.0), Request((4, 5), 12, 0.0), Request((6,), 20, 0.0)]  # one graph
    engine = Engine(m, 2, compile=False)
    engine._compile(graphs=True)
    assert generate_ids(engine, requests) == generate_ids(Engine(m, 2, compile=False), requests)  # a row rejoins
    assert engine._compiled


def test_compiled_decode_stays_compiled_across_many_variants(monkeypatch):
    """Each (span, sampling mode, top-k bucket) is a graph of its own: more than dynamo's default of 8 recompiles,
    after which the step would fall back to eager (the inductor backend is swapped for dynamo's eager one here,
    which counts recompiles the same way, to keep the test fast)."""
    from torch._dynamo.utils import counters

    compile = torch.compile
    monkeypatch.setattr(torch, "compile", lambda fn, mode=None, **kw: compile(fn, backend="eager", **kw))
    torch._dynamo.reset()
    counters.clear()
    m = _model("rope", block_size=16)  # one span: every graph comes from the sampling modes
    engine, eager = Engine(m, 2, compile=True), Engine(m, 2, compile=False)
    settings = [dict(temperature=0.0), dict(temperature=0.8), dict(temperature=0.8, top_p=0.9)]
    settings += [dict(temperature=0.8, top_k=k) for k in (1, 2, 3, 5, 9, 17)]  # buckets 1, 2, 4, 8, 16, 32
    for i, kw in enumerate(settings):  # 9 graphs, past the default limit of 8
        requests = [Request((1, 2, 3), 20, seed=i, **kw), Request((4, 5, 6), 20, seed=i + 1, **kw)]
        assert generate_ids(engine, requests) == generate_ids(eager, requests), kw
    # one static-shape graph per variant (none of them run eagerly, none with dynamic shapes)
    assert engine._compiled and counters["stats"]["unique_graphs"] == len(settings)


def test_bigram_and_training_mode():
    torch.manual_seed(0)
    b = Bigram(GPTConfig(arch="bigram", vocab_size=10, block_size=4)).eval()
    want, tok = [], 3
    for _ in range(9):  # past block_size: a bigram only ever needs the last token
        tok = int(b(torch.tensor([[tok]]))[0][0, -1].argmax())
        want.append(tok)
    assert generate(b, [3], 9, temperature=0) == want
    with pytest.raises(ValueError, match="model.eval"):
        Engine(GPT(GPTConfig(vocab_size=5, block_size=4, n_layer=1, n_head=1, n_embd=8)))  # nn.Module starts in train


def test_text_stream_cuts_exactly_before_a_stop_string():
    tok = CharTokenizer(sorted(set("ab\nc:é")))
    ts = TextStream(tok, ["\n\n"])
    assert ts.feed(tok.encode("ab\n")) == "ab" and ts.feed(tok.encode("\nc")) == "" and ts.stopped
    ts = TextStream(tok, ["c:", "b\n"])
    assert ts.feed(tok.encode("a")) == "a" and ts.feed(tok.encode("c")) == "" and ts.feed(tok.encode("é")) == "cé"
    assert ts.feed(tok.encode("b")) == "" and ts.finish() == "b"  # held back, then released at the end
    with pytest.raises(ValueError, match="empty"):
        TextStream(tok, [""])


def test_generate_text_stops_at_a_stop_string_and_joins_to_decode():
    tok = CharTokenizer(sorted(set("hello world, é!")))
    m = _model(vocab_size=tok.vocab_size, block_size=32)
    requests = [Request(tuple(tok.encode("he")), 30, 1.0, seed=3), Request(tuple(tok.encode("wo")), 30, 0.0)]
    full = [tok.decode(ids) for ids in generate_ids(Engine(m, 2), requests)]
    stop = full[0][5:7]
    pieces = {0: [], 1: []}
    finish = {}
    for i, text, why in generate_text(Engine(m, 2), tok, requests, [[stop], []]):
        pieces[i].append(text)
        finish[i] = why
    assert "".join(pieces[0]) == full[0][: full[0].index(stop)] and finish[0] == "stop"
    assert "".join(pieces[1]) == full[1] and finish[1] == "length"


def test_word_tokenizer_text_keeps_its_spaces():
    tok = WordTokenizer.train("the cat sat on the mat . the dog ran")
    ts = TextStream(tok)
    ids = tok.encode("the cat sat .")
    assert "".join(ts.feed([i]) for i in ids) + ts.finish() == tok.decode(ids)


def test_attention_reads_a_power_of_two_span():
    from gptkit.generate.engine import span_for

    assert [span_for(n, 1024) for n in (1, 16, 17, 100, 1000, 1024)] == [16, 16, 32, 128, 1024, 1024]
    assert span_for(900, 1000) == 1000 and math.log2(span_for(300, 4096)) == 9


def test_prefill_groups_pad_rows_of_close_lengths_within_the_budget():
    from gptkit.generate.engine import PREFILL_FREE, prefill_groups

    assert prefill_groups([3, 1, 300, 200, 290]) == [[2, 4, 3], [0, 1]]  # the docstring's example
    lengths = [1, 5, 40, 41, 90, 200, 201, 390, 400, 1000, 1024, 1024, 3000, 4096, 4096]
    groups = prefill_groups(lengths, budget=4096)
    assert sorted(i for g in groups for i in g) == list(range(len(lengths)))
    for g in groups:
        longest = lengths[g[0]]
        assert all(lengths[i] <= longest for i in g)
        assert len(g) == 1 or len(g) * longest <= 4096  # a row longer than the budget goes alone
        assert all(2 * lengths[i] >= longest for i in g) or len(g) * longest <= PREFILL_FREE
    assert prefill_groups([]) == [] and prefill_groups([7]) == [[0]]


def _spy_fills(engine):
    """Record each batched prefill of `engine` (both backends name it _fill): (rows filled, their logits)."""
    fills, real = [], engine._fill

    def spy(index, ids, lengths):
        logits = real(index, ids, lengths)
        fills.append((index.tolist(), logits))
        return logits

    engine._fill = spy
    return fills


@pytest.mark.parametrize("pos", ["learned", "rope"])
def test_batched_prefill_equals_one_by_one_and_the_uncached_model(pos):
    m = _model(pos)
    prompts = [[1, 2, 3], [4], [5, 6, 7, 8, 9, 10, 11], [12, 13]]
    requests = [Request(p, 6, temperature=0) for p in prompts]
    engine = Engine(m, 4)
    fills = _spy_fills(engine)
    seen, real_forward = [], m.forward

    def spy(idx, *a, **kw):
        out = real_forward(idx, *a, **kw)
        if idx.shape[1] == 1 and not seen:  # the first decode step: every row's first token at its position
            seen.append(out[0][:, -1].clone())
        return out

    m.forward = spy
    try:
        got = generate_ids(engine, requests)
    finally:
        m.forward = real_forward
    assert [rows for rows, _ in fills] == [[2, 0, 3, 1]]  # one forward for the four rows, longest first
    with torch.no_grad():
        uncached = torch.stack([m(torch.tensor([p]))[0][0, -1] for p in prompts])
        alone = []
        for r in requests:
            one = Engine(m, 1)
            one_fills = _spy_fills(one)
            alone.append(generate_ids(one, [r])[0])
            assert len(one_fills) == 1
            torch.testing.assert_close(one_fills[0][1][0], uncached[len(alone) - 1], atol=1e-5, rtol=1e-5)
        batched = torch.zeros_like(uncached)
        batched[[2, 0, 3, 1]] = fills[0][1]  # the fill's rows are slots 2, 0, 3, 1; slot i holds request i
        torch.testing.assert_close(batched, uncached, atol=1e-5, rtol=1e-5)
        # the padding written beyond the short rows' lengths is never seen: the next step equals the uncached model
        nxt = torch.stack([m(torch.tensor([p + g[:1]]))[0][0, -1] for p, g in zip(prompts, got)])
        torch.testing.assert_close(seen[0], nxt, atol=1e-5, rtol=1e-5)
    assert got == alone == [_uncached_greedy(m, p, 6) for p in prompts]


@pytest.mark.parametrize("pos", ["learned", "rope"])
def test_rows_freed_at_one_read_back_are_prefilled_together(pos, monkeypatch):
    import gptkit.generate.engine

    m = _model(pos)
    prompts = [[1, 2, 3], [4], [5, 6, 7, 8, 9, 10, 11], [12, 13], [3, 3, 3, 3, 3, 3], [7], [9, 8, 7, 6, 5, 4, 3]]
    requests = [Request(p, 5, temperature=0) for p in prompts]  # the same length: rows finish at the same step
    want = [_uncached_greedy(m, p, 5) for p in prompts]
    engine = Engine(m, 3)
    fills = _spy_fills(engine)
    assert generate_ids(engine, requests) == want
    assert [len(rows) for rows, _ in fills] == [3, 3, 1]  # 7 requests through 3 rows: three prefill forwards
    monkeypatch.setattr(gptkit.generate.engine, "PREFILL_FREE", 1)  # lengths 7, 2, 6, 1 then pad by at most 2x: two groups
    engine = Engine(m, 4, sync_every=2)
    fills = _spy_fills(engine)
    assert generate_ids(engine, requests[2:6]) == want[2:6]
    assert [rows for rows, _ in fills] == [[0, 2], [1, 3]]


def test_join_needs_free_slots_and_request_settings():
    engine = Engine(_model(), 2)
    with pytest.raises(ValueError, match="free slots"):
        engine.join([(i, Request((1,), 3)) for i in range(3)])
    assert engine.join([("a", Request((1,), 3)), ("b", Request((2, 3), 0))]) == [0, 1] and engine.free == 0
    assert Request((1,), top_k=3, seed=2).settings(10) == (1.0, 3, 1.0, 2)  # the docstring's example
    assert Request((1,), top_k=10**30).settings(10)[1] == 10  # a top-k past the vocabulary is no filter
    with pytest.raises(ValueError, match="outside the model's vocabulary"):  # not an IndexError (a CUDA assert)
        Engine(_model(), 1).add(Request((3, 20), 2))  # vocab_size 20
    with pytest.raises(ValueError, match="sync_every must be >= 1"):
        Engine(_model(), 1, sync_every=0)


def test_rows_that_fill_at_one_step_slide_in_one_forward():
    m = _model("rope", block_size=8)
    prompts = [[1, 2, 3], [4, 5, 6], [7, 8, 9], [2, 4]]  # three rows reach block_size at the same step
    engine = Engine(m, 4)
    fills = _spy_fills(engine)
    got = generate_ids(engine, [Request(p, 12, temperature=0) for p in prompts])
    assert got == [_sliding_reference(m, p, 12)[0] for p in prompts]
    slides = [rows for rows, _ in fills[1:]]  # after the one prefill forward: rows 0-2 together, row 3 a step later
    assert slides == [[0, 1, 2], [3], [0, 1, 2]], slides


def test_for_cpu_decoding_changes_the_kernel_not_the_model(monkeypatch):
    import copy

    from gptkit.torch.cpu import PackedLinear, for_cpu_decoding

    lin = torch.nn.Linear(2, 3)
    packed = for_cpu_decoding(torch.nn.Sequential(lin), pack=True)[0]  # the docstring's example
    assert isinstance(packed, PackedLinear) and (packed.in_features, packed.out_features) == (2, 3)
    x = torch.randn(4, 5, 2)
    with torch.no_grad():
        assert torch.allclose(packed(x), lin(x), atol=1e-6)  # any leading dims, as nn.Linear
    for pos in ("learned", "rope"):
        m = _model(pos, block_size=16)
        fast = for_cpu_decoding(copy.deepcopy(m), pack=True)
        assert isinstance(fast.lm_head, PackedLinear) and fast.wte.weight.is_contiguous()  # the embedding stays dense
        assert not any(isinstance(mod, torch.nn.Linear) for mod in fast.modules())
        idx = torch.randint(0, 20, (2, 16))
        with torch.no_grad():
            assert torch.allclose(fast(idx)[0], m(idx)[0], atol=1e-5)  # same values, another kernel
        prompts = [[1, 2, 3], [4, 5, 6, 7, 8]]
        requests = [Request(tuple(p), max_new_tokens=20, temperature=0.0) for p in prompts]  # past block_size
        assert generate_ids(Engine(fast, 2), requests) == generate_ids(Engine(m, 2), requests)
        assert generate_ids(Engine(fast, 1), requests[:1])[0][:13] == _uncached_greedy(m, prompts[0], 13)
    half = copy.deepcopy(_model()).to(torch.bfloat16)  # only fp32 on a CPU is swapped: bf16 (no fast oneDNN path on AVX2) stays
    assert isinstance(for_cpu_decoding(half, pack=True).lm_head, torch.nn.Linear)
    import gptkit.torch.generate

    def missing(weight, rows):
        raise AttributeError("no such op")

    monkeypatch.setattr(torch.ops.mkldnn, "_reorder_linear_weight", missing, raising=False)  # a build without it
    plain = for_cpu_decoding(copy.deepcopy(_model()), pack=True)
    assert not any(isinstance(mod, gptkit.torch.cpu.PackedLinear) for mod in plain.modules())  # none half-swapped


def test_for_cpu_decoding_packs_only_where_the_packed_layers_are_faster(monkeypatch):
    """By default the swap happens only when packed_is_faster says so (the kernel that wins depends on the CPU and the
    rows); pack=False never swaps. packed_is_faster times a pass over the layers each way: layers that take longer
    lose, whichever side they are on."""
    import copy
    import time

    import gptkit.torch.cpu as cpu

    m = _model()
    for faster in (True, False):
        monkeypatch.setattr(cpu, "packed_is_faster", lambda plain, packed, rows, faster=faster: faster)
        out = cpu.for_cpu_decoding(copy.deepcopy(m), 4)
        assert isinstance(out.lm_head, cpu.PackedLinear) is faster
    monkeypatch.setattr(cpu, "packed_is_faster", lambda *a: pytest.fail("pack=False measures nothing"))
    assert isinstance(cpu.for_cpu_decoding(copy.deepcopy(m), pack=False).lm_head, torch.nn.Linear)
    monkeypatch.undo()

    class Slow(torch.nn.Linear):
        def forward(self, x):
            time.sleep(0.003)
            return super().forward(x)

    fast, slow = [torch.nn.Linear(4, 2), torch.nn.Linear(2, 4)], [Slow(4, 2), Slow(2, 4)]
    assert cpu.packed_is_faster(slow, fast, rows=2) and not cpu.packed_is_faster(fast, slow, rows=2)
