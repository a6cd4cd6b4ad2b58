"""Fetch the named datasets on first use: public mirrors in order, SHA-256 checked, atomic, cached.

``fetch_dataset("mnist")`` returns a folder holding the dataset's original files, downloading
the missing ones into ``$CAPSJAX_DATA_DIR/<name>/`` or ``~/.cache/capsjax/datasets/<name>/``:

- each file is tried from each mirror in turn (a few attempts each, a short socket timeout), with a
  progress bar;
- each download is bounded: it stops as soon as more bytes arrive than the size recorded here
  (a file without a recorded size: :data:`UNKNOWN_SIZE_LIMIT`), and when it has not finished within its
  deadline, ``max(MIN_DEADLINE_SECONDS, size / MIN_BYTES_PER_SECOND)`` (60 s, or 100 kB/s: 99 s for
  MNIST's training images), or ``$CAPSJAX_DOWNLOAD_DEADLINE`` seconds if set. The download ends within
  the deadline plus one socket timeout (each read waits at most the shorter of the two); a mirror
  that is too slow or sends too much is not tried again, the next one is;
- it is written to ``<file>.part`` beside its final name, its SHA-256 is checked against the sum
  recorded here, and only then renamed into place: a partial, interrupted or corrupt download never
  looks complete, and a checksum mismatch leaves nothing in the cache;
- ``CAPSJAX_DATASET_MIRROR=URL`` replaces every public mirror by one base URL holding
  ``<dataset>/<original file name>`` (air-gapped sites, tests);
- when no mirror answers, one :class:`DownloadError` names the file, what each URL said, and how to
  place the files by hand;
- the cache needs a home folder: with ``HOME`` empty, ``/``, missing or not writable (and no
  ``$CAPSJAX_DATA_DIR``), :func:`cache_root` raises :class:`DataError` asking for ``CAPSJAX_DATA_DIR``
  rather than writing to ``/.cache`` or to a shared temporary folder that another user could fill.

The sums are the published ones (the same files tensorflow-datasets and Keras check against).
"""

from __future__ import annotations

import dataclasses
import hashlib
import http.client
import os
import pathlib
import shutil
import tarfile
import time
import urllib.error
import urllib.request

from tqdm.auto import tqdm

from capsjax.errors import ConfigError, DataError, DownloadError

MIRROR_ENV = "CAPSJAX_DATASET_MIRROR"
DATA_DIR_ENV = "CAPSJAX_DATA_DIR"
DEADLINE_ENV = "CAPSJAX_DOWNLOAD_DEADLINE"
DEFAULT_CACHE = pathlib.Path("~/.cache/capsjax/datasets")
TIMEOUT_SECONDS = 15.0
ATTEMPTS = 3
MIN_DEADLINE_SECONDS = 60.0
MIN_BYTES_PER_SECOND = 100_000
UNKNOWN_SIZE_LIMIT = 4 << 30  # bytes: the cap for a file whose size is not recorded
UNKNOWN_SIZE_DEADLINE_SECONDS = 3600.0


@dataclasses.dataclass(frozen=True)
class RemoteFile:
    """One original file of a dataset: its name on the mirrors, size in bytes (None: not recorded) and SHA-256."""

    name: str
    size: int | None
    sha256: str


@dataclasses.dataclass(frozen=True)
class RemoteDataset:
    """A dataset's public mirrors (base URLs, tried in order) and files; ``extract``: archives to unpack."""

    mirrors: tuple[str, ...]
    files: tuple[RemoteFile, ...]
    extract: bool = False


_IDX = (
    "train-images-idx3-ubyte.gz",
    "train-labels-idx1-ubyte.gz",
    "t10k-images-idx3-ubyte.gz",
    "t10k-labels-idx1-ubyte.gz",
)


def _idx_files(sizes: tuple[int, ...], sums: tuple[str, ...]) -> tuple[RemoteFile, ...]:
    """The four IDX files (train images, train labels, test images, test labels) with their sizes and sums."""
    return tuple(RemoteFile(name, size, sha) for name, size, sha in zip(_IDX, sizes, sums, strict=True))


REMOTE_DATASETS: dict[str, RemoteDataset] = {
    "mnist": RemoteDataset(
        mirrors=(
            "https://storage.googleapis.com/cvdf-datasets/mnist/",
            "https://ossci-datasets.s3.amazonaws.com/mnist/",
        ),
        files=_idx_files(
            (9912422, 28881, 1648877, 4542),
            (
                "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609",
                "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c",
                "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6",
                "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6",
            ),
        ),
    ),
    "fashion_mnist": RemoteDataset(
        mirrors=(
            "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
            "https://raw.githubusercontent.com/zalandoresearch/fashion-mnist/master/data/fashion/",
        ),
        files=_idx_files(
            (26421880, 29515, 4422102, 5148),
            (
                "3aede38d61863908ad78613f6a32ed271626dd12800ba2636569512369268a84",
                "a04f17134ac03560a47e3764e11b92fc97de4d1bfaf8ba1a3aa29af54cc90845",
                "346e55b948d973a97e58d2351dde16a484bd415d4595297633bb08f03db6a073",
                "67da17c76eaffca5446c3361aaab5c3cd6d1c2608764d35dfb1850b086bf8dd5",
            ),
        ),
    ),
    "kmnist": RemoteDataset(
        mirrors=("http://codh.rois.ac.jp/kmnist/dataset/kmnist/",),
        files=_idx_files(
            (18165135, 29497, 3041136, 5120),
            (
                "51467d22d8cc72929e2a028a0428f2086b092bb31cfb79c69cc0a90ce135fde4",
                "e38f9ebcd0f3ebcdec7fc8eabdcdaef93bb0df8ea12bee65224341c8183d8e17",
                "edd7a857845ad6bb1d0ba43fe7e794d164fe2dce499a1694695a792adfac43c5",
                "20bb9a0ef54c7db3efc55a92eef5582c109615df22683c380526788f98e42a1c",
            ),
        ),
    ),
    "cifar10": RemoteDataset(
        mirrors=("https://www.cs.toronto.edu/~kriz/",),
        files=(
            RemoteFile(
                "cifar-10-python.tar.gz", 170498071, "6d958be074577803d12ecdefd02955f39262c83c16fe9348329d7fe0b5c001ce"
            ),
        ),
        extract=True,
    ),
}


def cache_root() -> pathlib.Path:
    """Where downloads go: ``$CAPSJAX_DATA_DIR`` if set, else ``~/.cache/capsjax/datasets``.

    Raises:
      DataError: neither is usable: no ``$CAPSJAX_DATA_DIR`` and no usable home folder (see :func:`default_cache`).
    """
    explicit = os.environ.get(DATA_DIR_ENV)
    if explicit:
        return pathlib.Path(explicit).expanduser()
    cache = default_cache()
    if cache is None:
        raise DataError(
            f"no usable home folder for the dataset cache {DEFAULT_CACHE} (HOME={os.environ.get('HOME')!r}); "
            f"set {DATA_DIR_ENV}=DIR to a folder of yours for downloaded datasets, or give the data folder (--data-dir)"
        )
    return cache


def default_cache(cache: pathlib.Path | None = None) -> pathlib.Path | None:
    """``cache`` (default :data:`DEFAULT_CACHE`) with ``~`` expanded; None where ``~`` has no usable folder.

    A home folder is usable when it is an absolute path other than ``/``, is a folder, and is writable
    or already holds the cache: ``HOME=""`` would otherwise put the cache at ``/.cache``.
    """
    cache = DEFAULT_CACHE if cache is None else pathlib.Path(cache)
    if not cache.parts or cache.parts[0] != "~":
        return cache
    home = _home()
    if home is None:
        return None
    expanded = home.joinpath(*cache.parts[1:])
    usable = home.is_absolute() and home.resolve() != pathlib.Path("/") and home.is_dir()
    return expanded if usable and (os.access(home, os.W_OK) or expanded.is_dir()) else None


def _home() -> pathlib.Path | None:
    """``$HOME``, or where it is unset the password database's home folder (as ``expanduser`` does)."""
    home = os.environ.get("HOME")
    if home is None:
        home = os.path.expanduser("~")  # "~" itself where the database has no entry: not absolute, unusable
    return pathlib.Path(home) if home else None


def download_deadline(file: RemoteFile) -> float:
    """Seconds one download of ``file`` may take: ``$CAPSJAX_DOWNLOAD_DEADLINE`` if set, else
    ``max(MIN_DEADLINE_SECONDS, size / MIN_BYTES_PER_SECOND)`` (:data:`UNKNOWN_SIZE_DEADLINE_SECONDS`
    for a file without a recorded size).

    Raises:
      ConfigError: ``$CAPSJAX_DOWNLOAD_DEADLINE`` is not a number of seconds > 0.
    """
    text = os.environ.get(DEADLINE_ENV)
    if text:
        try:
            seconds = float(text)
        except ValueError:
            seconds = float("nan")
        if not seconds > 0 or seconds == float("inf"):
            raise ConfigError(f"{DEADLINE_ENV}={text!r}: expected a number of seconds > 0, e.g. {DEADLINE_ENV}=600")
        return seconds
    if file.size is None:
        return max(MIN_DEADLINE_SECONDS, UNKNOWN_SIZE_DEADLINE_SECONDS)
    return max(MIN_DEADLINE_SECONDS, file.size / MIN_BYTES_PER_SECOND)


def file_urls(name: str, file: RemoteFile) -> list[str]:
    """URLs to try for ``file`` of ``name``, in order (only ``$CAPSJAX_DATASET_MIRROR``'s if set)."""
    mirror = os.environ.get(MIRROR_ENV)
    if mirror:
        return [f"{mirror.rstrip('/')}/{name}/{file.name}"]
    return [base + file.name for base in REMOTE_DATASETS[name].mirrors]


def sha256_of(path: pathlib.Path) -> str:
    """SHA-256 of a file's bytes, hex."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def fetch_dataset(
    name: str,
    *,
    root: str | os.PathLike | None = None,
    timeout: float = TIMEOUT_SECONDS,
    deadline: float | None = None,
    attempts: int = ATTEMPTS,
    progress: bool = True,
) -> pathlib.Path:
    """The folder ``root/name`` (default root: :func:`cache_root`) with every file of ``name``, downloaded if missing.

    Args:
      name: a key of :data:`REMOTE_DATASETS`.
      root: cache root; the files land in ``root/name/``.
      timeout: socket timeout in seconds (connecting, and each read: a stalled server fails).
      deadline: seconds one download of a file from one URL may take in all (a server that sends a
        byte now and then fails too); None: :func:`download_deadline`.
      attempts: tries per URL before the next mirror (a deadline or size overrun goes to the next at once).
      progress: show a progress bar per file.

    Raises:
      ValueError: ``name`` is not downloadable.
      DownloadError: a file could not be fetched, was too slow or too large, or failed its checksum
        (nothing is left behind).
      DataError: ``root`` is None and there is no usable cache folder (see :func:`cache_root`).
    """
    if name not in REMOTE_DATASETS:
        raise ValueError(f"dataset: {name!r} cannot be downloaded; choose one of {sorted(REMOTE_DATASETS)}")
    remote = REMOTE_DATASETS[name]
    folder = (pathlib.Path(root).expanduser() if root is not None else cache_root()) / name
    for file in remote.files:
        target = folder / file.name
        if not target.is_file():
            limit = download_deadline(file) if deadline is None else deadline
            _fetch_file(name, file, target, timeout=timeout, deadline=limit, attempts=attempts, progress=progress)
        if remote.extract:
            _extract_once(target, folder)
    return folder


def _fetch_file(
    name: str, file: RemoteFile, target: pathlib.Path, *, timeout: float, deadline: float, attempts: int, progress: bool
) -> None:
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise DownloadError(f"{target.parent}: cannot create the download folder ({err.strerror or err})") from None
    partial = target.with_name(target.name + ".part")
    failures = []
    for url in file_urls(name, file):
        for attempt in range(1, attempts + 1):
            try:
                digest = _download(url, partial, file, timeout=timeout, deadline=deadline, progress=progress)
            except (urllib.error.URLError, http.client.HTTPException, OSError, ValueError) as err:
                partial.unlink(missing_ok=True)
                if isinstance(err, urllib.error.HTTPError):
                    reason = f"HTTP {err.code} {err.reason}"
                else:
                    reason = getattr(err, "reason", None) or err
                failures.append(f"  - {url} (attempt {attempt}): {reason}")
                if _permanent(err):
                    break  # missing on this mirror or nothing listening: retrying will not help
                time.sleep(min(0.5 * attempt, 2.0))
                continue
            if digest != file.sha256:
                partial.unlink(missing_ok=True)
                raise DownloadError(
                    f"{file.name} from {url}: SHA-256 {digest} does not match the expected {file.sha256}; "
                    "the download was discarded (a corrupt mirror, or a proxy that rewrote it)"
                )
            os.replace(partial, target)
            return
    raise DownloadError(
        f"could not download {name} file {file.name}:\n" + "\n".join(failures) + "\n"
        f"Offline? Place the original files ({', '.join(f.name for f in REMOTE_DATASETS[name].files)}) by hand in "
        f"{target.parent} (or any folder given as --data-dir), or set {MIRROR_ENV}=URL to a mirror holding "
        f"<dataset>/<file name>."
    )


class _Overrun(OSError):
    """A mirror that sent more bytes than expected, or not all of them within the deadline."""


def _permanent(err: Exception) -> bool:
    """A 4xx answer, a refused connection, too many bytes or too slow: the next mirror, not another attempt."""
    if isinstance(err, urllib.error.HTTPError):
        return 400 <= err.code < 500
    return isinstance(err, _Overrun) or isinstance(getattr(err, "reason", err), ConnectionRefusedError)


def _download(
    url: str, partial: pathlib.Path, file: RemoteFile, *, timeout: float, deadline: float, progress: bool
) -> str:
    """Stream ``url`` into ``partial`` within ``deadline`` seconds and the expected size; return the SHA-256.

    Raises:
      _Overrun: more bytes than ``file.size`` (or :data:`UNKNOWN_SIZE_LIMIT`) arrived or were announced,
        or the download had not finished after ``deadline`` seconds.
      OSError, urllib.error.URLError, http.client.HTTPException: the connection failed.
    """
    limit = UNKNOWN_SIZE_LIMIT if file.size is None else file.size
    start = time.monotonic()
    digest = hashlib.sha256()
    request = urllib.request.Request(url, headers={"User-Agent": "capsjax"})
    # Each read waits at most min(timeout, deadline): the download ends within deadline + that.
    with urllib.request.urlopen(request, timeout=min(timeout, deadline)) as response, open(partial, "wb") as out:
        announced = response.headers.get("Content-Length", "")
        if announced.isdigit() and int(announced) > limit:
            raise _Overrun(f"announces {int(announced)} bytes, more than the expected {limit} bytes; not read")
        received = 0
        with tqdm(total=limit, unit="B", unit_scale=True, desc=file.name, disable=not progress, leave=False) as bar:
            while block := response.read1(1 << 16):
                received += len(block)
                if received > limit:
                    raise _Overrun(f"sent more than the expected {limit} bytes ({received} so far); stopped reading")
                digest.update(block)
                out.write(block)
                bar.update(len(block))
                if time.monotonic() - start > deadline:
                    raise _Overrun(
                        f"{received} of {limit} bytes after {deadline:g} s, too slow (the deadline: {DEADLINE_ENV})"
                    )
    if file.size is not None and received < file.size:
        raise ConnectionError(f"the connection closed after {received} of {file.size} bytes")
    return digest.hexdigest()


def _extract_once(archive: pathlib.Path, folder: pathlib.Path) -> None:
    """Unpack a tar archive into ``folder`` once (a ``.extracted`` marker is written last)."""
    marker = folder / (archive.name + ".extracted")
    if marker.is_file():
        return
    staging = folder / (archive.name + ".extracting")
    shutil.rmtree(staging, ignore_errors=True)
    try:
        with tarfile.open(archive) as tar:
            _safe_extract(tar, staging)
    except (tarfile.TarError, OSError) as err:
        shutil.rmtree(staging, ignore_errors=True)
        raise DownloadError(f"{archive}: cannot unpack ({err}); delete it to download it again") from None
    for entry in staging.iterdir():
        destination = folder / entry.name
        if destination.exists():
            shutil.rmtree(destination) if destination.is_dir() else destination.unlink()
        os.replace(entry, destination)
    staging.rmdir()
    marker.write_text("ok\n")


def _safe_extract(tar: tarfile.TarFile, destination: pathlib.Path) -> None:
    """Extract regular files and folders only, never outside ``destination`` (tarfile's "data" filter)."""
    if hasattr(tarfile, "data_filter"):
        tar.extractall(destination, filter="data")
        return
    for member in tar.getmembers():  # Pythons without extraction filters (< 3.10.12 / 3.11.4)
        path = (destination / member.name).resolve()
        if not (member.isfile() or member.isdir()) or not path.is_relative_to(destination.resolve()):
            raise tarfile.TarError(f"refusing to extract {member.name!r}")
    tar.extractall(destination)
