"""OpenAI's GPT-2 checkpoints by name: "gpt2", "gpt2-medium", "gpt2-large", "gpt2-xl" -> a local HF folder.

A name is looked up, in order, in the Hugging Face cache that `transformers` / `huggingface_hub` fill
($HF_HUB_CACHE, else $HF_HOME/hub, else ~/.cache/huggingface/hub), then in gptkit's own cache
(`gptkit.files.cache_dir()/hf/NAME`), else downloaded there from huggingface.co. A download is checked
the way huggingface_hub checks it: the server names each file's digest (sha256 for LFS files such as
model.safetensors, the git blob sha1 for small files such as config.json) and the bytes must match.
Files are streamed to a temp file and renamed (gptkit.files.atomic_writer), so an interrupted download never looks
finished.

Stdlib only; reading the folder is gptkit.hf.arch's job.
"""

from __future__ import annotations

import hashlib
import os
import re
import urllib.error
import urllib.request
from pathlib import Path

from gptkit.files import atomic_writer, cache_dir, user_cache_root

HUB_MODELS = {name: f"openai-community/{name}" for name in ("gpt2", "gpt2-medium", "gpt2-large", "gpt2-xl")}
FILES = ("config.json", "model.safetensors")
WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin")
HUB_URL = "https://huggingface.co/{repo}/resolve/main/{filename}"


def hf_hub_cache() -> Path:
    """The folder huggingface_hub caches models in (the same rules as huggingface_hub)."""
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"])
    if os.environ.get("HF_HOME"):
        return Path(os.environ["HF_HOME"]) / "hub"
    return user_cache_root() / "huggingface" / "hub"


def is_checkpoint_folder(folder: Path) -> bool:
    return (folder / "config.json").is_file() and any((folder / f).is_file() for f in WEIGHT_FILES)


def find_in_hf_cache(name: str) -> Path | None:
    """The snapshot folder of a cached GPT-2 (refs/main first), or None.

    Example: "gpt2" -> ~/.cache/huggingface/hub/models--openai-community--gpt2/snapshots/<sha>/
    Repos cached under the old unprefixed id (models--gpt2) are found too.
    """
    for repo in (HUB_MODELS[name], name):
        root = hf_hub_cache() / ("models--" + repo.replace("/", "--"))
        candidates = []
        ref = root / "refs" / "main"
        if ref.is_file():
            candidates.append(root / "snapshots" / ref.read_text(encoding="utf-8").strip())
        if (root / "snapshots").is_dir():
            candidates += sorted((root / "snapshots").iterdir())
        for snap in candidates:
            if is_checkpoint_folder(snap):
                return snap
    return None


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None


def expected_digest(url: str, timeout: float = 30.0) -> str:
    """The digest the hub states for a file: X-Linked-Etag (LFS: sha256) or ETag (git blob sha1), from a HEAD
    request that does not follow the redirect to the CDN (whose ETag is something else)."""
    opener = urllib.request.build_opener(_NoRedirect)
    try:
        headers = opener.open(urllib.request.Request(url, method="HEAD"), timeout=timeout).headers
    except urllib.error.HTTPError as e:
        if e.code not in (301, 302, 303, 307, 308):
            raise
        headers = e.headers
    tag = headers.get("X-Linked-Etag") or headers.get("ETag") or ""
    return tag.removeprefix("W/").strip('"').lower()


def _digest_matches(expected: str, path: Path, sha256: str) -> bool:
    """LFS files: the sha256 of the bytes; small files: git's blob sha1 (of b"blob <len>\\0" + bytes)."""
    if re.fullmatch(r"[0-9a-f]{64}", expected):
        return expected == sha256
    if re.fullmatch(r"[0-9a-f]{40}", expected):
        data = path.read_bytes()
        return expected == hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()
    return False  # no usable digest: refuse rather than keep unchecked bytes


def _urlopen(url: str, timeout: float):
    return urllib.request.urlopen(url, timeout=timeout)  # noqa: S310 (https URLs built from HUB_URL)


def download_file(url: str, dest: Path, expected: str, timeout: float = 60.0) -> None:
    """Stream `url` into `dest` atomically, checking the bytes against the hub's digest before they appear there."""
    sha256 = hashlib.sha256()
    with atomic_writer(dest) as f, _urlopen(url, timeout) as r:
        for block in iter(lambda: r.read(1 << 20), b""):
            f.write(block)
            sha256.update(block)
        f.flush()
        if not _digest_matches(expected, Path(f.name), sha256.hexdigest()):
            raise ValueError(f"download of {url} does not match the digest the hub states ({expected or 'none'}; "
                             f"got sha256 {sha256.hexdigest()}); not saved, try again")


def resolve_pretrained(name_or_path: str | os.PathLike, download: bool = True) -> Path:
    """A local HF GPT-2 folder for a path or one of HUB_MODELS' names (see the module docstring)."""
    p = Path(name_or_path)
    if p.is_dir():
        return p
    name = str(name_or_path)
    if name not in HUB_MODELS:
        if p.exists():
            raise ValueError(f"{p} is a file; give the folder that holds config.json and model.safetensors")
        raise FileNotFoundError(f"{name}: no such folder, and not a GPT-2 name ({', '.join(HUB_MODELS)})")
    found = find_in_hf_cache(name)
    if found:
        return found
    ours = cache_dir() / "hf" / name
    if all((ours / f).is_file() for f in FILES):
        return ours
    if not download:
        raise FileNotFoundError(f"{name} is not in the HF cache ({hf_hub_cache()}) nor in {ours}; "
                                f"put its config.json and model.safetensors in {ours}")
    for filename in FILES:
        if (ours / filename).is_file():
            continue
        url = HUB_URL.format(repo=HUB_MODELS[name], filename=filename)
        try:
            download_file(url, ours / filename, expected_digest(url))
        except OSError as e:
            raise FileNotFoundError(
                f"{name} is not cached ({hf_hub_cache()}, {ours}) and downloading {url} failed ({e}); offline, copy "
                f"the files of https://huggingface.co/{HUB_MODELS[name]} (config.json, model.safetensors) into {ours}"
            ) from None
    return ours
