"""The dataset downloader against HTTP servers on 127.0.0.1: good files, a corrupt one, a missing one, a
server that stalls; atomic writes; and load_dataset's use of it."""

import hashlib
import http.server
import pathlib
import threading
import time

import numpy as np
import pytest

from capsjax.data import download
from capsjax.data.download import DownloadError, RemoteDataset, RemoteFile, fetch_dataset
from capsjax.data.sources import DataNotFoundError, load_dataset
from capsjax.errors import ConfigError, DataError
from helpers import write_fake_mnist


class Server:
    """Serves ``files`` (URL path -> bytes) on 127.0.0.1; paths in ``stall`` never answer in time, and
    ``custom`` maps a path to a function that answers the request itself (its handler as argument)."""

    def __init__(self):
        self.files: dict[str, bytes] = {}
        self.stall: set[str] = set()
        self.custom: dict[str, object] = {}
        self.requests: list[str] = []
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                outer.requests.append(self.path)
                if self.path in outer.custom:
                    outer.custom[self.path](self)
                    return
                if self.path in outer.stall:
                    time.sleep(3)
                    return
                body = outer.files.get(self.path)
                if body is None:
                    self.send_error(404)
                    return
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def server(monkeypatch):
    served = Server()
    monkeypatch.setenv("CAPSJAX_DATASET_MIRROR", served.url)
    yield served
    served.close()


def tiny_dataset(monkeypatch, contents: dict[str, bytes]) -> None:
    files = tuple(RemoteFile(name, len(body), hashlib.sha256(body).hexdigest()) for name, body in contents.items())
    monkeypatch.setitem(
        download.REMOTE_DATASETS, "tiny", RemoteDataset(mirrors=("http://unused.invalid/",), files=files)
    )


def test_good_files_are_downloaded_checked_and_cached(server, monkeypatch, tmp_path):
    contents = {"a.bin": b"first file" * 1000, "b.bin": b"second"}
    tiny_dataset(monkeypatch, contents)
    server.files = {f"/tiny/{name}": body for name, body in contents.items()}
    folder = fetch_dataset("tiny", root=tmp_path, progress=False)
    assert folder == tmp_path / "tiny"
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == contents  # no .part files left
    assert sorted(server.requests) == ["/tiny/a.bin", "/tiny/b.bin"]
    fetch_dataset("tiny", root=tmp_path, progress=False)
    assert len(server.requests) == 2  # cached: nothing fetched again


def test_a_corrupt_file_is_a_checksum_error_and_leaves_nothing(server, monkeypatch, tmp_path):
    tiny_dataset(monkeypatch, {"a.bin": b"the real bytes"})
    server.files = {"/tiny/a.bin": b"the real bytez"}
    with pytest.raises(
        DownloadError, match=r"a\.bin from http://127\.0\.0\.1:\d+/tiny/a\.bin: SHA-256 \w+ does not match"
    ):
        fetch_dataset("tiny", root=tmp_path, progress=False)
    assert not any((tmp_path / "tiny").iterdir())


def test_a_missing_file_names_the_file_and_how_to_place_it(server, monkeypatch, tmp_path):
    tiny_dataset(monkeypatch, {"a.bin": b"x"})
    with pytest.raises(DownloadError) as info:
        fetch_dataset("tiny", root=tmp_path, progress=False)
    message = str(info.value)
    assert "could not download tiny file a.bin" in message and "404" in message
    assert str(tmp_path / "tiny") in message and "by hand" in message and "CAPSJAX_DATASET_MIRROR" in message
    assert server.requests == ["/tiny/a.bin"]  # a 404 is not retried


def test_a_stalled_server_times_out_and_is_retried(server, monkeypatch, tmp_path):
    tiny_dataset(monkeypatch, {"a.bin": b"x"})
    server.stall = {"/tiny/a.bin"}
    start = time.monotonic()
    with pytest.raises(DownloadError, match="timed out"):
        fetch_dataset("tiny", root=tmp_path, timeout=0.3, attempts=2, progress=False)
    assert time.monotonic() - start < 2.5
    assert server.requests == ["/tiny/a.bin"] * 2
    assert not any((tmp_path / "tiny").iterdir())


def test_mirrors_are_tried_in_order(monkeypatch, tmp_path):
    good, bad = Server(), Server()
    try:
        body = b"payload"
        monkeypatch.delenv("CAPSJAX_DATASET_MIRROR")
        files = (RemoteFile("a.bin", len(body), hashlib.sha256(body).hexdigest()),)
        mirrors = (bad.url + "/first/", good.url + "/second/")
        monkeypatch.setitem(download.REMOTE_DATASETS, "tiny", RemoteDataset(mirrors=mirrors, files=files))
        good.files = {"/second/a.bin": body}
        folder = fetch_dataset("tiny", root=tmp_path, progress=False)
        assert (folder / "a.bin").read_bytes() == body
        assert bad.requests == ["/first/a.bin"] and good.requests == ["/second/a.bin"]
    finally:
        good.close()
        bad.close()


def test_an_interrupted_download_never_looks_complete(server, monkeypatch, tmp_path):
    tiny_dataset(monkeypatch, {"a.bin": b"x" * 100})

    def interrupted(url, partial, file, **kwargs):
        partial.write_bytes(b"x" * 10)
        raise KeyboardInterrupt

    monkeypatch.setattr(download, "_download", interrupted)
    with pytest.raises(KeyboardInterrupt):
        fetch_dataset("tiny", root=tmp_path, progress=False)
    assert not (tmp_path / "tiny" / "a.bin").exists()  # only a .part file, which is never used


def test_mnist_is_downloaded_on_first_use(server, tmp_path, monkeypatch):
    """load_dataset finds no folder, fetches the four files from the mirror, checks them against MNIST's
    published sums (here: files whose sums are swapped in for a generated stand-in), and loads them."""
    fake = write_fake_mnist(tmp_path / "served")
    files = tuple(
        RemoteFile(f.name, len(f.read_bytes()), hashlib.sha256(f.read_bytes()).hexdigest())
        for f in sorted(fake.iterdir())
    )
    monkeypatch.setitem(
        download.REMOTE_DATASETS, "mnist", RemoteDataset(mirrors=("http://unused.invalid/",), files=files)
    )
    server.files = {f"/mnist/{f.name}": f.read_bytes() for f in fake.iterdir()}
    monkeypatch.setenv("CAPSJAX_DATA_DIR", str(tmp_path / "cache"))
    monkeypatch.setattr("capsjax.data.sources.SYSTEM_DIR", tmp_path / "system")
    data = load_dataset("mnist", "test")
    assert len(data) == 64 and data.source == str(tmp_path / "cache" / "mnist")
    assert len(server.requests) == 4


def test_real_mnist_files_match_the_recorded_sums(real_mnist_dir):
    for file in download.REMOTE_DATASETS["mnist"].files:
        path = real_mnist_dir / file.name
        assert path.stat().st_size == file.size
        assert download.sha256_of(path) == file.sha256


def test_offline_load_is_one_clear_error(tmp_path, monkeypatch):
    monkeypatch.delenv("CAPSJAX_DATA_DIR", raising=False)
    monkeypatch.setattr("capsjax.data.sources.SYSTEM_DIR", tmp_path / "system")
    monkeypatch.setattr("capsjax.data.sources._load_tfds", lambda name, split: (_ for _ in ()).throw(ImportError()))
    with pytest.raises(DataNotFoundError) as info:
        load_dataset("fashion_mnist", "test")
    message = str(info.value)
    assert "could not download fashion_mnist file train-images-idx3-ubyte.gz" in message
    assert "Connection refused" in message and "by hand" in message


def test_cifar10_archive_is_unpacked_safely(server, monkeypatch, tmp_path):
    import io
    import tarfile

    def archive(members: dict[str, bytes]) -> bytes:
        buffer = io.BytesIO()
        with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
            for name, body in members.items():
                info = tarfile.TarInfo(name)
                info.size = len(body)
                tar.addfile(info, io.BytesIO(body))
        return buffer.getvalue()

    def serve(body: bytes) -> None:  # the archive as the only file of "cifar10", with its sum
        files = (RemoteFile("cifar-10-python.tar.gz", len(body), hashlib.sha256(body).hexdigest()),)
        remote = RemoteDataset(mirrors=("http://unused.invalid/",), files=files, extract=True)
        monkeypatch.setitem(download.REMOTE_DATASETS, "cifar10", remote)
        server.files = {"/cifar10/cifar-10-python.tar.gz": body}

    serve(archive({"cifar-10-batches-py/data_batch_1": b"batch"}))
    folder = fetch_dataset("cifar10", root=tmp_path, progress=False)
    assert (folder / "cifar-10-batches-py" / "data_batch_1").read_bytes() == b"batch"

    serve(archive({"../outside": b"x"}))
    with pytest.raises(DownloadError, match="cannot unpack"):
        fetch_dataset("cifar10", root=tmp_path / "other", progress=False)
    assert not (tmp_path / "outside").exists()


def test_unknown_dataset():
    with pytest.raises(ValueError, match="'svhn' cannot be downloaded"):
        fetch_dataset("svhn")
    assert np.all([f.size > 0 for d in download.REMOTE_DATASETS.values() for f in d.files])
    assert isinstance(download.cache_root(), pathlib.Path)


def answer(handler, body_chunks, *, length=None, pause=0.0) -> int:
    """Send a 200 answer (``Content-Length: length`` if given) chunk by chunk; return the bytes sent."""
    handler.send_response(200)
    if length is not None:
        handler.send_header("Content-Length", str(length))
    handler.end_headers()
    sent = 0
    try:
        for chunk in body_chunks:
            handler.wfile.write(chunk)
            handler.wfile.flush()
            sent += len(chunk)
            time.sleep(pause)
    except OSError:  # the client hung up
        pass
    return sent


def test_a_server_that_drips_bytes_ends_by_the_deadline(server, monkeypatch, tmp_path):
    """A mirror that sends one byte now and then (each read within the socket timeout) is stopped at the
    download's deadline, not when it finishes, and the next mirror is tried instead of this one again."""
    body = b"d" * 40
    tiny_dataset(monkeypatch, {"a.bin": body})
    server.custom["/tiny/a.bin"] = lambda h: answer(h, (body[k : k + 1] for k in range(len(body))), pause=0.1)
    monkeypatch.setattr(download, "MIN_DEADLINE_SECONDS", 0.5)
    start = time.monotonic()
    with pytest.raises(DownloadError, match=r"/tiny/a\.bin \(attempt 1\): \d+ of 40 bytes after 0\.5 s, too slow"):
        fetch_dataset("tiny", root=tmp_path, timeout=5.0, progress=False)
    assert time.monotonic() - start < 2.0  # the whole drip takes 4 s
    assert server.requests == ["/tiny/a.bin"] and not any((tmp_path / "tiny").iterdir())


@pytest.mark.parametrize("announced", [False, True])
def test_an_oversized_answer_is_cut_at_the_expected_size(server, monkeypatch, tmp_path, announced):
    """A mirror that sends far more than the recorded size: reading stops just past it (or, when the
    answer announces its length, before reading), and the error names the URL and both sizes."""
    tiny_dataset(monkeypatch, {"a.bin": b"x" * 1000})
    sent = []
    chunks = 64 * 1024
    total = 400 * chunks  # 26 MB
    server.custom["/tiny/a.bin"] = lambda h: sent.append(
        answer(h, (b"y" * chunks for _ in range(400)), length=total if announced else None)
    )
    with pytest.raises(DownloadError) as info:
        fetch_dataset("tiny", root=tmp_path, progress=False)
    message = str(info.value)
    assert f"{server.url}/tiny/a.bin" in message and "expected 1000 bytes" in message
    assert (f"announces {total} bytes" if announced else "more than the expected 1000 bytes") in message
    time.sleep(0.2)  # the server notices the closed connection
    assert server.requests == ["/tiny/a.bin"] and sent and sent[0] < total // 2
    assert not any((tmp_path / "tiny").iterdir())


def test_a_download_cut_short_is_retried_not_a_traceback(server, monkeypatch, tmp_path):
    tiny_dataset(monkeypatch, {"a.bin": b"z" * 100})
    server.custom["/tiny/a.bin"] = lambda h: answer(h, [b"z" * 10], length=100)
    with pytest.raises(DownloadError, match="could not download tiny file a.bin"):
        fetch_dataset("tiny", root=tmp_path, attempts=2, progress=False)
    assert server.requests == ["/tiny/a.bin"] * 2


def test_the_deadline_scales_with_the_recorded_size(monkeypatch):
    monkeypatch.delenv("CAPSJAX_DOWNLOAD_DEADLINE", raising=False)
    mnist_images = download.REMOTE_DATASETS["mnist"].files[0]
    assert mnist_images.size == 9912422
    assert download.download_deadline(mnist_images) == pytest.approx(99.12422)
    assert download.download_deadline(RemoteFile("small", 100, "")) == 60.0
    assert download.download_deadline(RemoteFile("unknown", None, "")) >= 60.0
    monkeypatch.setenv("CAPSJAX_DOWNLOAD_DEADLINE", "7.5")
    assert download.download_deadline(mnist_images) == 7.5
    for bad in ("soon", "0", "-3", "inf"):
        monkeypatch.setenv("CAPSJAX_DOWNLOAD_DEADLINE", bad)
        with pytest.raises(ConfigError, match="CAPSJAX_DOWNLOAD_DEADLINE"):
            download.download_deadline(mnist_images)


def test_every_file_has_its_size_recorded_beside_its_sum():
    for remote in download.REMOTE_DATASETS.values():
        for file in remote.files:
            assert file.size is None or file.size > 0, file
            assert len(file.sha256) == 64, file
    debian = pathlib.Path("/usr/share/datasets/fashion-mnist")
    if not debian.is_dir():
        pytest.skip(f"{debian} not installed (apt-get install dataset-fashion-mnist)")
    for file in download.REMOTE_DATASETS["fashion_mnist"].files:
        # Debian's copies are the same gzip files without the original name in the gzip header.
        stored_name = len(file.name.removesuffix(".gz")) + 1
        assert file.size == (debian / file.name).stat().st_size + stored_name, file


@pytest.mark.parametrize("home", ["", "/", "missing", "read_only"])
def test_no_usable_home_is_an_error_naming_the_cache_variable(monkeypatch, tmp_path, home):
    """With HOME empty or "/", the cache would be /.cache at the filesystem root; with a missing or
    read-only home, nowhere: cache_root asks for CAPSJAX_DATA_DIR instead, and a lookup skips the cache."""
    import os

    if home == "read_only" and os.geteuid() == 0:
        pytest.skip("root writes to read-only folders")
    monkeypatch.setattr(download, "DEFAULT_CACHE", pathlib.Path("~/.cache/capsjax/datasets"))
    monkeypatch.delenv("CAPSJAX_DATA_DIR", raising=False)
    folder = tmp_path / "home"
    if home == "read_only":
        folder.mkdir(mode=0o500)
    monkeypatch.setenv("HOME", str(folder) if home in ("missing", "read_only") else home)
    with pytest.raises(DataError, match="no usable home folder .* set CAPSJAX_DATA_DIR=DIR"):
        download.cache_root()
    assert download.default_cache() is None
    with pytest.raises(DataError, match="CAPSJAX_DATA_DIR"):
        fetch_dataset("mnist", progress=False)
    monkeypatch.setenv("CAPSJAX_DATA_DIR", str(tmp_path / "data"))
    assert download.cache_root() == tmp_path / "data"


def test_a_usable_home_holds_the_cache(monkeypatch, tmp_path):
    monkeypatch.setattr(download, "DEFAULT_CACHE", pathlib.Path("~/.cache/capsjax/datasets"))
    monkeypatch.delenv("CAPSJAX_DATA_DIR", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    assert download.cache_root() == tmp_path / ".cache" / "capsjax" / "datasets"
