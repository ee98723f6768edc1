"""imap_bounded: order kept, bounded look-ahead, same results inline and in processes."""

from gptkit.pool import imap_bounded


def test_docstring_example():
    assert list(imap_bounded(abs, [-1, 2, -3], num_workers=2)) == [1, 2, 3]


def test_reads_input_lazily():
    seen = []

    def items():
        for i in range(100):
            seen.append(i)
            yield -i

    it = imap_bounded(abs, items(), num_workers=2, max_pending=4)
    assert next(it) == 0 and len(seen) <= 5
    assert list(it) == list(range(1, 100))


def test_inline_equals_processes():
    assert list(imap_bounded(str, range(50))) == list(imap_bounded(str, range(50), num_workers=2))
