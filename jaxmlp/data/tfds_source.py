"""The tensorflow-datasets source: the upstream IDX files, fetched and checksummed by tfds, cached as .npz.

Why not ``tfds.load``: without tensorflow (jaxmlp does not depend on it), tensorflow-datasets can neither
``tfds.load`` nor prepare the stock ``fashion_mnist`` (its extraction and PNG encoding call tensorflow), and a
tensorflow install would be a second, slower way to read the same four IDX files. So jaxmlp uses the parts of
tensorflow-datasets that work without tensorflow, and its own IDX reader for the rest:

1. the registry: the builder's base URL (``tfds.builder_cls(name).URL``) and the size and sha256 it records
   for each upstream file (``builder_cls(name).url_infos``);
2. ``tfds.download.DownloadManager`` with ``force_checksums_validation``: it downloads, checks size and sha256,
   and keeps the verified ``.gz`` files under ``<cache>/tfds-downloads/<name>/`` (a later rebuild of the
   ``.npz`` then reuses them instead of downloading again);
3. :func:`jaxmlp.data.read_idx_files` decodes and validates them ONCE into ``<cache>/<name>.npz``; every later
   call reads only that file (~0.1 s, and without importing tensorflow-datasets at all).

``<cache>`` is ``$JAXMLP_CACHE_DIR``, default ``~/.cache/jaxmlp``. The cache is keyed by dataset name only:
delete ``<name>.npz`` to fetch again (e.g. after changing the mirror).

Mirrors: ``$JAXMLP_TFDS_URL`` (or ``base_url=``) replaces the builder's base URL; it must be http(s), as tfds
copies other schemes with tensorflow. Each mirror URL is checked against the checksum tfds records for the
upstream file of the same name, so a mirror has to serve the upstream files byte for byte (Debian's
``dataset-fashion-mnist`` files are recompressed and would fail; they are read directly as the second source).
A mirror that serves other bytes, such as a test's local HTTP server, passes their checksums as
``checksums={file name: (size, sha256)}``; they are registered with the download manager for the mirror's URLs
and checked exactly like recorded ones.
"""

from __future__ import annotations

import os
import re
import shutil
import urllib.parse
import zipfile
from pathlib import Path

import numpy as np

from jaxmlp.data import idx_files as data
from jaxmlp.data.dataset import Dataset
from jaxmlp.errors import UsageError

_KEYS = ("train_images", "train_labels", "test_images", "test_labels")
_PROBE_TIMEOUT_S = 10


class Unavailable(Exception):
    """tensorflow-datasets cannot provide the dataset here (offline, not installed, bad mirror...); the
    message is a short reason that `data.load` puts into its one-line error."""


def cache_dir() -> Path:
    """Where downloads and decoded arrays are kept: ``$JAXMLP_CACHE_DIR`` or ``~/.cache/jaxmlp``."""
    return Path(os.environ.get("JAXMLP_CACHE_DIR") or Path.home() / ".cache" / "jaxmlp").expanduser()


def load(name: str, *, base_url: str | None = None, checksums: dict[str, tuple[int, str]] | None = None,
         cache: str | os.PathLike | None = None) -> Dataset:
    """The named dataset from the cached .npz, or else downloaded through tensorflow-datasets and cached.

    base_url: where the four ``.gz`` files are (default ``$JAXMLP_TFDS_URL``, else the builder's upstream URL).
    checksums: ``{file name: (size in bytes, sha256 hex)}`` for a mirror serving other bytes than upstream.
    cache: the cache folder (default :func:`cache_dir`).
    Raises Unavailable with a short reason when the files cannot be had.
    """
    data.check_name(name)
    cache = Path(cache).expanduser() if cache is not None else cache_dir()
    npz = cache / f"{name}.npz"
    if npz.is_file():
        dataset = _read_npz(npz, name)
        if dataset is not None:
            return dataset
        # corrupt or foreign cache file: rebuilt below (where an unwritable cache becomes Unavailable)
    paths, base = _download(name, base_url, checksums, cache)
    dataset = data.read_idx_files(name, paths, source=f"tensorflow-datasets download from {base}")
    _write_npz(npz, dataset)
    return dataset


# ---- download --------------------------------------------------------------------------------------

def _download(name: str, base_url: str | None, checksums: dict[str, tuple[int, str]] | None,
              cache: Path) -> tuple[dict[str, Path], str]:
    """Fetch and verify the four .gz files; returns ({IDX stem: local path}, base URL used)."""
    try:  # imported here: only a cache miss pays for it
        import tensorflow_datasets as tfds
        from tensorflow_datasets.core.download.download_manager import NonMatchingChecksumError
    except ImportError as e:
        raise Unavailable(f"not usable: {e}; pip install tensorflow-datasets importlib_resources") from None

    builder = tfds.builder_cls(name)
    upstream = builder.URL
    recorded = builder.url_infos or {}
    base = base_url or os.environ.get("JAXMLP_TFDS_URL") or upstream
    base = base if base.endswith("/") else base + "/"
    if urllib.parse.urlsplit(base).scheme not in ("http", "https"):
        raise Unavailable(f"mirror URL {base} must start with http:// or https://")
    stems = [stem for pair in data.FILES.values() for stem in pair]
    urls = {stem: urllib.parse.urljoin(base, f"{stem}.gz") for stem in stems}

    url_infos = {}  # what the download manager checks each URL against
    for stem, url in urls.items():
        fname = f"{stem}.gz"
        if checksums is not None:
            size, sha256 = checksums[fname]
            url_infos[url] = tfds.download.checksums.UrlInfo(size=size, checksum=sha256, filename=fname)
        else:
            info = recorded.get(urllib.parse.urljoin(upstream, fname))
            if info is None:
                raise Unavailable(f"tensorflow-datasets records no checksum for {name}'s {fname}")
            url_infos[url] = info

    _probe(urls[stems[0]])
    downloads = cache / "tfds-downloads"
    try:
        manager = tfds.download.DownloadManager(download_dir=downloads, dataset_name=name, url_infos=url_infos,
                                                force_checksums_validation=True)
        paths = manager.download(urls)
    except NonMatchingChecksumError as e:
        _remove_partial(downloads)
        url = re.search(r"Artifact (\S+),", str(e))
        raise Unavailable(f"{url.group(1) if url else 'a download'} does not match its recorded checksum; "
                          "a mirror must serve the upstream files unchanged") from None
    except Exception as e:  # requests / tfds DownloadError / OSError: the reason, on one line
        _remove_partial(downloads)
        raise Unavailable(f"download from {base} failed: {_short(e)}") from None
    return {stem: Path(os.fspath(path)) for stem, path in paths.items()}, base


def _probe(url: str) -> None:
    """Fail fast when the server cannot be reached.

    tfds's downloader retries a refused connection or a 5xx answer ten times with exponential backoff (about
    200 s) and sets no timeout, so one quick HEAD request (honouring the same proxy settings) comes first.
    """
    import requests

    host = urllib.parse.urlsplit(url).netloc
    try:
        response = requests.head(url, timeout=_PROBE_TIMEOUT_S, allow_redirects=True)
    except requests.RequestException as e:
        raise Unavailable(f"cannot reach {host}: {_short(e)}; connect to the network or set "
                          "JAXMLP_TFDS_URL to a mirror") from None
    if response.status_code in (404, 410) or response.status_code >= 500:
        raise Unavailable(f"{url} answered HTTP {response.status_code}")


def _short(error: BaseException) -> str:
    """The useful part of a (often very long, nested) network error message."""
    text = str(error)
    errno = re.search(r"\[Errno -?\d+\] [^'\")\]]+", text)
    if errno:
        return errno.group(0).strip()
    first = text.splitlines()[0] if text else type(error).__name__
    return first if len(first) <= 200 else first[:197] + "..."


def _remove_partial(downloads: Path) -> None:
    """A failed download leaves tfds's temporary folders behind (`<file>.tmp.<uuid>`); remove them."""
    for tmp in downloads.glob("**/*.tmp.*"):
        shutil.rmtree(tmp, ignore_errors=True)


# ---- the decoded cache -----------------------------------------------------------------------------

def _write_npz(npz: Path, dataset: Dataset) -> None:
    """Write atomically (temporary file + rename): a crash or a concurrent run never leaves half a file."""
    tmp = npz.with_name(f".{npz.name}.{os.getpid()}.tmp")
    try:
        npz.parent.mkdir(parents=True, exist_ok=True)
        with open(tmp, "wb") as f:  # uncompressed: reading it back is then a plain copy
            np.savez(f, source=np.array(dataset.source), **{k: getattr(dataset, k) for k in _KEYS})
        os.replace(tmp, npz)
    except OSError as e:
        tmp.unlink(missing_ok=True)
        raise Unavailable(f"cannot write the cache {npz} ({e.strerror}); set JAXMLP_CACHE_DIR to a "
                          "writable folder") from None


def _read_npz(npz: Path, name: str) -> Dataset | None:
    """The cached dataset, or None when the file is unreadable or does not hold what `_write_npz` wrote."""
    try:
        with np.load(npz, allow_pickle=False) as z:
            arrays = {k: z[k] for k in _KEYS}
            source = str(z["source"])
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile):
        return None
    for split in ("train", "test"):
        images, labels = arrays[f"{split}_images"], arrays[f"{split}_labels"]
        if (images.dtype != np.uint8 or images.ndim != 3 or images.shape[1:] != (28, 28)
                or labels.dtype != np.int32 or labels.shape != images.shape[:1]):
            return None
    return Dataset(name, **arrays, source=f"{npz} (cached {source})")


# ---- other datasets, with tensorflow -----------------------------------------------------------------

def load_with_tensorflow(name: str) -> Dataset:
    """Any tensorflow-datasets image classification set with ``train`` and ``test`` splits, through
    ``tfds.load``: that needs tensorflow itself (not a jaxmlp dependency) and the prepared data or a network."""
    try:
        import tensorflow  # noqa: F401  (tfds.load cannot work without it)
        import tensorflow_datasets as tfds
    except ImportError:
        raise UsageError(f"tfds:{name} needs tensorflow (pip install tensorflow); without it jaxmlp reads only "
                         f"the IDX family ({', '.join(data.DATASETS)}), .npz files and arrays") from None
    try:
        splits = tfds.as_numpy(tfds.load(name, split=["train", "test"], batch_size=-1, as_supervised=True))
    except Exception as e:  # tfds raises many kinds: DatasetNotFoundError, download errors...
        raise UsageError(f"tensorflow-datasets could not load {name}: {_short(e)}") from None
    (x_train, y_train), (x_test, y_test) = splits
    from jaxmlp.data.dataset import arrays

    return arrays(x_train, y_train, x_test, y_test, name=name)
