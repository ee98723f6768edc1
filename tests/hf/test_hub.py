"""GPT-2 by name: the HF cache layout, gptkit's cache, and checked downloads (a fake server: no network)."""

import hashlib
import io
import shutil
import subprocess
import sys

import pytest

from gptkit.files import cache_dir
from gptkit.hf import hub


def _snapshot(root, repo_dir, rev, src):
    snap = root / repo_dir / "snapshots" / rev
    shutil.copytree(src, snap)
    (root / repo_dir / "refs").mkdir(parents=True, exist_ok=True)
    (root / repo_dir / "refs" / "main").write_text(rev)
    return snap


def test_names_resolve_to_the_hf_cache_snapshot_of_refs_main(tmp_path, monkeypatch, tiny_gpt2_folder):
    # huggingface_hub's layout: models--{org}--{name}/refs/main names the snapshot folder
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path))
    _snapshot(tmp_path, "models--openai-community--gpt2", "0ld", tiny_gpt2_folder)
    want = _snapshot(tmp_path, "models--openai-community--gpt2", "c0ffee", tiny_gpt2_folder)
    assert hub.resolve_pretrained("gpt2") == want
    # an old cache under the unprefixed id is found too
    legacy = _snapshot(tmp_path, "models--gpt2-xl", "abc", tiny_gpt2_folder)
    assert hub.resolve_pretrained("gpt2-xl") == legacy


def test_hf_cache_env_rules(monkeypatch, tmp_path):
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "home"))
    assert hub.hf_hub_cache() == tmp_path / "home" / "hub"
    monkeypatch.delenv("HF_HOME")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert hub.hf_hub_cache() == tmp_path / "xdg" / "huggingface" / "hub"


def test_a_snapshot_without_weights_is_skipped(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path))
    snap = tmp_path / "models--openai-community--gpt2-large" / "snapshots" / "x"
    snap.mkdir(parents=True)
    (snap / "config.json").write_text("{}")  # an interrupted HF download: config only
    assert hub.find_in_hf_cache("gpt2-large") is None


class _FakeHub:
    """Serves files by URL and states their digests the way huggingface.co does."""

    def __init__(self, files: dict[str, bytes], lie: bool = False, offline: bool = False):
        self.files, self.lie, self.offline, self.fetched = files, lie, offline, []

    def _name(self, url):
        return url.rsplit("/", 1)[1]

    def digest(self, url, timeout=30.0):
        data = self.files[self._name(url)]
        if self._name(url) == "config.json":  # small files: the git blob sha1
            return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()
        return "0" * 64 if self.lie else hashlib.sha256(data).hexdigest()

    def urlopen(self, url, timeout):
        if self.offline:
            raise OSError("network is unreachable")
        self.fetched.append(self._name(url))
        return io.BytesIO(self.files[self._name(url)])


def _serve(monkeypatch, fake):
    monkeypatch.setattr(hub, "expected_digest", fake.digest)
    monkeypatch.setattr(hub, "_urlopen", fake.urlopen)


def test_download_into_gptkit_cache_checked_and_then_reused(tmp_path, monkeypatch, tiny_gpt2_folder):
    monkeypatch.setenv("GPTKIT_CACHE", str(tmp_path / "cache"))
    files = {f: (tiny_gpt2_folder / f).read_bytes() for f in hub.FILES}
    fake = _FakeHub(files)
    _serve(monkeypatch, fake)
    folder = hub.resolve_pretrained("gpt2-medium")
    assert folder == cache_dir() / "hf" / "gpt2-medium"
    assert {f: (folder / f).read_bytes() for f in hub.FILES} == files
    assert hub.resolve_pretrained("gpt2-medium") == folder and fake.fetched == list(hub.FILES)  # no second fetch
    assert not list(folder.glob(".*.part"))


def test_download_with_a_wrong_digest_keeps_nothing(tmp_path, monkeypatch, tiny_gpt2_folder):
    monkeypatch.setenv("GPTKIT_CACHE", str(tmp_path / "cache"))
    _serve(monkeypatch, _FakeHub({f: (tiny_gpt2_folder / f).read_bytes() for f in hub.FILES}, lie=True))
    with pytest.raises(ValueError, match="does not match the digest"):
        hub.resolve_pretrained("gpt2")
    assert not (cache_dir() / "hf" / "gpt2" / "model.safetensors").exists()
    assert not list((cache_dir() / "hf" / "gpt2").glob(".*"))


def test_offline_says_where_to_put_the_files(tmp_path, monkeypatch):
    monkeypatch.setenv("GPTKIT_CACHE", str(tmp_path / "cache"))
    _serve(monkeypatch, _FakeHub({}, offline=True))
    monkeypatch.setattr(hub, "expected_digest", lambda url, timeout=30.0: "0" * 64)
    with pytest.raises(FileNotFoundError, match=r"copy the files of https://huggingface.co/openai-community/gpt2 "):
        hub.resolve_pretrained("gpt2")


def test_git_blob_digest_matches_git_hash_object():
    # `printf 'hello\n' | git hash-object --stdin` prints ce013625030ba8dba906f756967f9e9ca394464a (git's own value)
    blob = b"hello\n"
    assert hashlib.sha1(b"blob %d\0" % len(blob) + blob).hexdigest() == "ce013625030ba8dba906f756967f9e9ca394464a"


def test_unknown_names_and_files(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"not a GPT-2 name \(gpt2, gpt2-medium, gpt2-large, gpt2-xl\)"):
        hub.resolve_pretrained("gpt3")
    (tmp_path / "model.safetensors").write_bytes(b"")
    with pytest.raises(ValueError, match="is a file; give the folder"):
        hub.resolve_pretrained(tmp_path / "model.safetensors")


def test_sample_gpt2_by_name_from_the_hf_cache(tmp_path, tiny_gpt2_folder):
    """`gptkit sample gpt2` with the gpt2 tokenizer; the weights are a tiny random stand-in in the HF cache layout."""
    import os

    _snapshot(tmp_path / "hub", "models--openai-community--gpt2", "rev", tiny_gpt2_folder)
    env = {**os.environ, "HF_HUB_CACHE": str(tmp_path / "hub"), "GPTKIT_CACHE": str(tmp_path / "cache")}
    cmd = [sys.executable, "-m", "gptkit", "sample", "gpt2", "--prompt", "Hello, my name is", "--max-new-tokens", "8",
           "--temperature", "0", "--device", "cpu"]
    r = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("Hello, my name is") and len(r.stdout) > len("Hello, my name is\n")
    assert not (tmp_path / "cache" / "hf").exists()  # nothing downloaded
