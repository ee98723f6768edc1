"""GPT-2 and cl100k_base give tiktoken's ids exactly (tiktoken built from the same shared files)."""

import hashlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gptkit.files import RefFile, find_reference_file

ADVERSARIAL = [
    "hello world!!!? (안녕하세요!) lol123 😉",  # Karpathy's tokenizer lecture
    "hello 👋🏽 world 🇺🇸 👨‍👩‍👧‍👦 🏳️‍🌈",  # emoji with modifiers and ZWJ sequences
    "你好，世界。日本語のテキストです。한국어 텍스트",  # CJK
    "e\u0301 n\u0303 Z̤͔ͧ̑̓ä͖̭̈̇lͮ̒ͫǧ̗͚̚o̙̔ͮ̇͐̇ a\u0308\u0323",  # combining marks
    " " * 1000,
    "a" + " " * 100 + "b" + "\t" * 50 + "c",
    "\t\t\n\n   \n" * 50 + "end   ",
    "1234567890" * 20 + " 3.14159 1,000,000 2024-01-01 ٣٤٥ ¾",  # digit runs, Arabic-Indic digits
    "I'm you're he'll they've she'd it's DON'T I'M 'S 'll 'Ve",  # contractions in every case
    "line1\r\nline2\r\n\r\n  \r\n end\r",  # CRLF
    "\u200b\u200d\ufeff עברית العربية \u202e",  # zero-width and RTL
    "\x00\x01\x7f\x1b[31m",  # control characters
    "lone surrogate \ud800 here",  # tiktoken replaces it; so must we
    "",
]


@pytest.mark.parametrize("which", ["gpt2", "cl100k"])
def test_parity_on_shared_texts(which, shakespeare, taylorswift, request):
    ours = request.getfixturevalue(f"{'gpt2' if which == 'gpt2' else 'cl100k'}_tok")
    ref = request.getfixturevalue(f"tiktoken_{which}")
    for text in (shakespeare, taylorswift):
        assert ours.encode_ordinary(text) == ref.encode_ordinary(text)


@pytest.mark.parametrize("which", ["gpt2", "cl100k"])
@pytest.mark.parametrize("text", ADVERSARIAL, ids=range(len(ADVERSARIAL)))
def test_parity_adversarial(which, text, request):
    ours = request.getfixturevalue(f"{which}_tok" if which == "gpt2" else "cl100k_tok")
    ref = request.getfixturevalue(f"tiktoken_{which}")
    assert ours.encode(text, disallowed_special=()) == ref.encode(text, disallowed_special=())
    ids = ref.encode_ordinary(text)
    assert ours.decode(ids) == ref.decode(ids)


# Code points unassigned in Python 3.11's Unicode 14 (category Cn) are left out: the `regex` package follows newer
# Unicode (it calls U+3D000 a letter) than tiktoken's Rust regex does, so the two split such text differently.
@settings(max_examples=300, deadline=None)
@given(text=st.text(st.characters(exclude_categories=("Cs", "Cn"))))
def test_parity_arbitrary_text(text, gpt2_tok, cl100k_tok, tiktoken_gpt2, tiktoken_cl100k):
    assert gpt2_tok.encode_ordinary(text) == tiktoken_gpt2.encode_ordinary(text)
    assert cl100k_tok.encode_ordinary(text) == tiktoken_cl100k.encode_ordinary(text)
    assert cl100k_tok.decode(cl100k_tok.encode_ordinary(text)) == text


def test_special_tokens_and_sizes(gpt2_tok, cl100k_tok, tiktoken_cl100k):
    assert gpt2_tok.vocab_size == 50257 and gpt2_tok.eot_token == 50256
    assert cl100k_tok.vocab_size == 100277 and cl100k_tok.eot_token == 100257
    text = "a<|fim_prefix|>b<|endoftext|>c<|endofprompt|>"
    assert cl100k_tok.encode(text, allowed_special="all") == tiktoken_cl100k.encode(text, allowed_special="all")
    assert cl100k_tok.token_bytes(100276) == b"<|endofprompt|>"
    with pytest.raises(ValueError, match="100256"):  # the gap between the ranks and the specials
        cl100k_tok.decode([100256])


def test_gpt2_from_data_gym_equals_tiktoken_file(data_dir):
    from tiktoken.load import load_tiktoken_bpe

    from gptkit.tokenizer.encodings import gpt2_ranks_from_data_gym

    ranks = gpt2_ranks_from_data_gym(str(data_dir / "gpt2/vocab.bpe"), str(data_dir / "gpt2/encoder.json"))
    assert ranks == load_tiktoken_bpe(str(data_dir / "gpt2/gpt2.tiktoken"))


def test_bytes_to_unicode_examples():
    from gptkit.tokenizer.encodings import bytes_to_unicode

    m = bytes_to_unicode()
    assert (m[33], m[32], m[10]) == ("!", "Ġ", "Ċ") and len(set(m.values())) == 256


def test_corrupt_vocab_bpe_names_line(tmp_path, data_dir):
    from gptkit.tokenizer.encodings import gpt2_ranks_from_data_gym

    bad = tmp_path / "vocab.bpe"
    lines = (data_dir / "gpt2/vocab.bpe").read_text(encoding="utf-8").split("\n")
    lines[5] = "nospacehere"
    bad.write_text("\n".join(lines), encoding="utf-8")
    with pytest.raises(ValueError, match=r"vocab.bpe:6: not a merge line"):
        gpt2_ranks_from_data_gym(str(bad), str(data_dir / "gpt2/encoder.json"))


# -- finding files: $GPTKIT_DATA, the cache, a checked download, a clear error offline ---------------

REF = RefFile("sub/thing.txt", "https://example.invalid/thing.txt", hashlib.sha256(b"payload").hexdigest())


def test_lookup_prefers_gptkit_data(tmp_path, monkeypatch):
    (tmp_path / "data/sub").mkdir(parents=True)
    (tmp_path / "data/sub/thing.txt").write_bytes(b"payload")
    monkeypatch.setenv("GPTKIT_DATA", str(tmp_path / "data"))
    assert find_reference_file(REF, download=None) == tmp_path / "data/sub/thing.txt"


def test_download_is_checked_and_cached(tmp_path, monkeypatch):
    monkeypatch.setenv("GPTKIT_DATA", str(tmp_path / "empty"))
    monkeypatch.setenv("GPTKIT_CACHE", str(tmp_path / "cache"))
    calls = []
    path = find_reference_file(REF, download=lambda url: calls.append(url) or b"payload")
    assert path == tmp_path / "cache/sub/thing.txt" and path.read_bytes() == b"payload"
    assert find_reference_file(REF, download=None) == path and calls == [REF.url]  # second time: cached


def test_download_with_wrong_checksum_is_refused(tmp_path, monkeypatch):
    monkeypatch.setenv("GPTKIT_DATA", str(tmp_path / "empty"))
    monkeypatch.setenv("GPTKIT_CACHE", str(tmp_path / "cache"))
    with pytest.raises(ValueError, match="sha256"):
        find_reference_file(REF, download=lambda url: b"tampered")
    assert not (tmp_path / "cache/sub/thing.txt").exists()


def test_offline_error_says_where_to_put_the_file(tmp_path, monkeypatch):
    monkeypatch.setenv("GPTKIT_DATA", str(tmp_path / "empty"))
    monkeypatch.setenv("GPTKIT_CACHE", str(tmp_path / "cache"))

    def offline(url):
        raise OSError("network is unreachable")

    with pytest.raises(FileNotFoundError, match=r"put it at .*cache/sub/thing.txt"):
        find_reference_file(REF, download=offline)


def test_pretrained_offline_without_files(tmp_path, monkeypatch):
    import gptkit.files
    from gptkit import Tokenizer

    monkeypatch.setenv("GPTKIT_DATA", str(tmp_path / "empty"))
    monkeypatch.setenv("GPTKIT_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(gptkit.files, "download_bytes", lambda url: (_ for _ in ()).throw(OSError("offline")))
    monkeypatch.setattr(gptkit.files.find_reference_file, "__defaults__", (gptkit.files.download_bytes, None))
    with pytest.raises(FileNotFoundError, match="cl100k/cl100k_base.tiktoken"):
        Tokenizer.from_pretrained("cl100k_base")
    with pytest.raises(ValueError, match="unknown pretrained"):
        Tokenizer.from_pretrained("gpt5")


def test_reference_file_without_sha256_needs_a_content_check(tmp_path, monkeypatch):
    monkeypatch.setenv("GPTKIT_DATA", str(tmp_path / "data"))
    monkeypatch.setenv("GPTKIT_CACHE", str(tmp_path / "cache"))
    ref = RefFile("sub/nosum.txt", "https://example.invalid/nosum.txt", "")
    with pytest.raises(ValueError, match="no sha256 and no content check"):
        find_reference_file(ref, download=lambda url: b"x")

    def check(data):
        if data != b"good":
            raise ValueError("bad content")

    with pytest.raises(ValueError, match="bad content"):
        find_reference_file(ref, download=lambda url: b"evil", check=check)
    assert not (tmp_path / "cache/sub/nosum.txt").exists()
    assert find_reference_file(ref, download=lambda url: b"good", check=check).read_bytes() == b"good"
