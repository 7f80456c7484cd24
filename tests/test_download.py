"""`attire data download` against a local HTTP server on 127.0.0.1 (never the internet)."""

from __future__ import annotations

import io
import socket
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pandas as pd
import pytest
from PIL import Image
from typer.testing import CliRunner

from attire.cli.apps import app
from attire.cli.download import parse_size  # also registers `attire data download` on `app`
from attire.data.download import (
    DownloadError,
    download_images,
    read_url_table,
    retry_after_seconds,
    url_stem,
)

FAST = {"backoff": 0.001, "show_progress": False, "workers": 4}


def _image(fmt: str, size: tuple[int, int] = (24, 16)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, (200, 30, 90)).save(buf, fmt)
    return buf.getvalue()


JPEG, PNG = _image("JPEG"), _image("PNG")
BIG_PNG = _image("PNG", (300, 300))


class Server:
    """Routes path -> handler(nth request to that path) -> (status, headers, body, delay)."""

    def __init__(self) -> None:
        self.hits: Counter[str] = Counter()
        self.times: dict[str, list[float]] = defaultdict(list)
        self.lock = threading.Lock()
        self.routes: dict[str, Callable[[int], tuple[int, dict[str, str], bytes, float]]] = {}
        handler = self._handler_class()
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.httpd.daemon_threads = True
        self.base = f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def url(self, path: str) -> str:
        return self.base + path

    @property
    def requests(self) -> int:
        return sum(self.hits.values())

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                with server.lock:
                    server.hits[self.path] += 1
                    n = server.hits[self.path]
                    server.times[self.path].append(time.monotonic())
                route = server.routes.get(self.path)
                status, headers, body, delay = route(n) if route else (404, {}, b"nope", 0.0)
                time.sleep(delay)
                try:
                    self.send_response(status)
                    for k, v in headers.items():
                        self.send_header(k, v)
                    self.end_headers()
                    self.wfile.write(body)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up (too large, timeout): expected

            def log_message(self, *args: object) -> None:
                pass

        return Handler


def _ok(body: bytes, ctype: str, length: bool = True) -> tuple[int, dict[str, str], bytes, float]:
    headers = {"Content-Type": ctype}
    if length:
        headers["Content-Length"] = str(len(body))
    return 200, headers, body, 0.0


@pytest.fixture
def server() -> Iterator[Server]:
    s = Server()
    s.routes.update(
        {
            "/a.jpg": lambda n: _ok(JPEG, "image/jpeg"),
            "/b": lambda n: _ok(PNG, "image/png; charset=binary"),
            "/big.png": lambda n: _ok(BIG_PNG, "image/png"),
            "/missing": lambda n: (404, {}, b"not found", 0.0),
            "/flaky": lambda n: (500, {}, b"oops", 0.0) if n == 1 else _ok(JPEG, "image/jpeg"),
            "/down": lambda n: (503, {}, b"down", 0.0),
            "/limited": lambda n: (
                (429, {"Retry-After": "5"}, b"slow down", 0.0) if n == 1 else _ok(PNG, "image/png")
            ),
            "/slow": lambda n: (*_ok(JPEG, "image/jpeg")[:3], 3.0),
            "/huge-declared": lambda n: _ok(BIG_PNG, "image/png"),
            "/huge-streamed": lambda n: _ok(BIG_PNG, "image/png", length=False),
            "/page": lambda n: _ok(b"<html>Sorry, no image</html>", "text/html"),
            "/fake.jpg": lambda n: _ok(b"this is not a jpeg at all", "image/jpeg"),
            "/cut.png": lambda n: _ok(BIG_PNG[: len(BIG_PNG) // 2], "image/png", length=False),
            "/moved": lambda n: (302, {"Location": "/a.jpg"}, b"", 0.0),
        }
    )
    thread = threading.Thread(target=s.httpd.serve_forever, args=(0.02,), daemon=True)
    thread.start()
    yield s
    s.httpd.shutdown()
    s.httpd.server_close()


def _table(tmp_path: Path, rows: list[dict], name: str = "urls.csv") -> Path:
    path = tmp_path / name
    df = pd.DataFrame(rows)
    if name.endswith(".csv"):
        df.to_csv(path, index=False)
    else:
        df.to_parquet(path)
    return path


def _one(server: Server, tmp_path: Path, route: str, **kw: object) -> pd.Series:
    """Download a single route and return its report row."""
    table = _table(tmp_path, [{"url": server.url(route), "sku": "x1"}])
    result = download_images(table, tmp_path / "out", id_column="sku", **{**FAST, **kw})
    assert result.total == 1
    return result.report.iloc[0]


def _leftovers(out: Path) -> list[str]:
    return sorted(p.name for p in out.glob("*.part"))


# -- success --------------------------------------------------------------------------------------


def test_jpeg_and_png_saved_with_extension_from_content_type(server: Server, tmp_path: Path):
    table = _table(
        tmp_path,
        [
            {"url": server.url("/a.jpg"), "sku": "s1", "color": "red"},
            {"url": server.url("/b"), "sku": "s2", "color": ""},
        ],
    )
    out = tmp_path / "out"
    result = download_images(table, out, id_column="sku", **FAST)

    assert (result.ok, result.skipped, result.failed, result.invalid) == (2, 0, 0, 0)
    assert (out / "s1.jpg").read_bytes() == JPEG
    assert (out / "s2.png").read_bytes() == PNG
    report = pd.read_csv(out / "download_report.csv", keep_default_na=False)
    assert list(report["status"]) == ["ok", "ok"]
    assert list(report["path"]) == ["s1.jpg", "s2.png"]
    assert list(report["bytes"]) == [len(JPEG), len(PNG)]
    assert list(report["attempts"]) == [1, 1]
    done = pd.read_csv(out / "downloaded.csv", dtype=str, keep_default_na=False)
    assert list(done.columns) == ["url", "sku", "color", "path"]
    assert done.to_dict("records")[1] == {
        "url": server.url("/b"),
        "sku": "s2",
        "color": "",
        "path": "s2.png",
    }
    assert _leftovers(out) == []


def test_without_id_column_the_stem_is_a_stable_url_hash(server: Server, tmp_path: Path):
    url = server.url("/a.jpg")
    table = _table(tmp_path, [{"url": url}])
    result = download_images(table, tmp_path / "out", **FAST)
    assert result.report.at[0, "path"] == f"{url_stem(url)}.jpg"
    assert url_stem(url) == url_stem(url) != url_stem(server.url("/b"))
    assert len(url_stem(url)) == 16


def test_redirect_is_followed(server: Server, tmp_path: Path):
    row = _one(server, tmp_path, "/moved")
    assert (row["status"], row["path"]) == ("ok", "x1.jpg")


def test_parquet_input_with_custom_columns(server: Server, tmp_path: Path):
    table = _table(
        tmp_path,
        [{"image_url": server.url("/a.jpg"), "code": 7, "sleeve": "long"}],
        name="urls.parquet",
    )
    result = download_images(
        table, tmp_path / "out", url_column="image_url", id_column="code", **FAST
    )
    assert result.ok == 1
    assert (tmp_path / "out" / "7.jpg").exists()
    done = pd.read_csv(result.downloaded_path)
    assert done.loc[0, ["sleeve", "path"]].tolist() == ["long", "7.jpg"]


# -- HTTP failures and retries -------------------------------------------------------------------


def test_404_fails_without_retry(server: Server, tmp_path: Path):
    row = _one(server, tmp_path, "/missing", retries=3)
    assert (row["status"], row["reason"], row["attempts"]) == ("failed", "http_404", 1)
    assert server.hits["/missing"] == 1
    assert row["path"] == ""


def test_500_then_success_counts_the_retry(server: Server, tmp_path: Path):
    row = _one(server, tmp_path, "/flaky", retries=2)
    assert (row["status"], row["attempts"]) == ("ok", 2)
    assert server.hits["/flaky"] == 2


def test_persistent_503_gives_up_after_all_retries(server: Server, tmp_path: Path):
    row = _one(server, tmp_path, "/down", retries=2)
    assert (row["status"], row["reason"], row["attempts"]) == ("failed", "http_503", 3)
    assert server.hits["/down"] == 3


def test_429_waits_for_retry_after_up_to_the_cap(server: Server, tmp_path: Path):
    row = _one(server, tmp_path, "/limited", retries=1, max_retry_wait=0.3)
    assert (row["status"], row["attempts"]) == ("ok", 2)
    first, second = server.times["/limited"]
    # backoff alone would wait ~1 ms; Retry-After: 5 capped at 0.3 s must be honoured
    assert 0.3 <= second - first < 3


def test_retry_after_header_forms():
    now = datetime(2025, 1, 1, 12, 0, 0, tzinfo=UTC)
    assert retry_after_seconds("7", now) == 7
    assert retry_after_seconds("Wed, 01 Jan 2025 12:00:30 GMT", now) == 30
    assert retry_after_seconds("Wed, 01 Jan 2025 11:00:00 GMT", now) == 0  # in the past
    assert retry_after_seconds("soon", now) is None
    assert retry_after_seconds(None, now) is None


def test_slow_server_times_out_and_is_retried(server: Server, tmp_path: Path):
    start = time.monotonic()
    row = _one(server, tmp_path, "/slow", retries=1, timeout=0.2)
    assert (row["status"], row["reason"], row["attempts"]) == ("failed", "timeout", 2)
    assert server.hits["/slow"] == 2
    # did not wait for the 3 s responses (two 0.2 s timeouts and a backoff take ~0.5 s; the
    # margin keeps a loaded machine from failing it, as 1 s responses and 1.5 s once did)
    assert time.monotonic() - start < 2.5


def test_connection_refused_is_a_connection_error(tmp_path: Path):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # closed again when the block ends: nothing listens
    table = _table(tmp_path, [{"url": f"http://127.0.0.1:{port}/x.jpg"}])
    result = download_images(table, tmp_path / "out", retries=2, **FAST)
    row = result.report.iloc[0]
    assert (row["status"], row["reason"], row["attempts"]) == ("failed", "connection_error", 3)


# -- content checks ------------------------------------------------------------------------------


def test_too_large_by_content_length_is_refused_before_download(server: Server, tmp_path: Path):
    row = _one(server, tmp_path, "/huge-declared", max_bytes=len(BIG_PNG) - 1)
    assert (row["status"], row["reason"], row["attempts"]) == ("failed", "too_large", 1)
    assert "Content-Length" in row["detail"]
    assert list((tmp_path / "out").glob("x1*")) == []


def test_too_large_while_streaming_without_content_length(server: Server, tmp_path: Path):
    row = _one(server, tmp_path, "/huge-streamed", max_bytes=len(BIG_PNG) - 1)
    assert (row["status"], row["reason"]) == ("failed", "too_large")
    assert "Content-Length" not in row["detail"]
    assert list((tmp_path / "out").glob("x1*")) == []


def test_limit_equal_to_size_is_accepted(server: Server, tmp_path: Path):
    row = _one(server, tmp_path, "/huge-streamed", max_bytes=len(BIG_PNG))
    assert (row["status"], row["bytes"]) == ("ok", len(BIG_PNG))


def test_html_error_page_with_200_is_a_failure(server: Server, tmp_path: Path):
    row = _one(server, tmp_path, "/page")
    assert (row["status"], row["reason"], row["detail"]) == (
        "failed",
        "bad_content_type",
        "text/html",
    )
    assert list((tmp_path / "out").glob("x1*")) == []


def test_allowed_types_are_configurable(server: Server, tmp_path: Path):
    row = _one(server, tmp_path, "/b", allowed_types=["image/jpeg"])
    assert (row["status"], row["reason"], row["detail"]) == (
        "failed",
        "bad_content_type",
        "image/png",
    )


@pytest.mark.parametrize("route", ["/fake.jpg", "/cut.png"])
def test_bytes_that_do_not_decode_are_not_an_image(server: Server, tmp_path: Path, route: str):
    row = _one(server, tmp_path, route)
    assert (row["status"], row["reason"]) == ("failed", "not_an_image")
    assert list((tmp_path / "out").glob("x1*")) == []


# -- resume --------------------------------------------------------------------------------------


def test_rerun_makes_no_request_for_files_already_present(server: Server, tmp_path: Path):
    table = _table(
        tmp_path,
        [
            {"url": server.url("/a.jpg"), "sku": "s1"},
            {"url": server.url("/b"), "sku": "s2"},
            {"url": server.url("/missing"), "sku": "s3"},
        ],
    )
    out = tmp_path / "out"
    first = download_images(table, out, id_column="sku", **FAST)
    assert (first.ok, first.failed) == (2, 1)
    before = server.requests

    second = download_images(table, out, id_column="sku", **FAST)
    assert server.requests - before == 1  # only the 404 is tried again
    assert server.hits["/a.jpg"] == server.hits["/b"] == 1
    assert list(second.report["status"]) == ["skipped", "skipped", "failed"]
    assert list(second.report["reason"]) == ["already_present", "already_present", "http_404"]
    assert list(second.report["attempts"]) == [0, 0, 1]
    done = pd.read_csv(second.downloaded_path, dtype=str)
    assert list(done["path"]) == ["s1.jpg", "s2.png"]  # skipped files are still ready for ingest


def test_partial_file_from_a_killed_run_is_not_complete(server: Server, tmp_path: Path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "x1.part").write_bytes(JPEG[:50])
    (out / "dropped-row.part").write_bytes(PNG[:10])  # its row is no longer in the table
    row = _one(server, tmp_path, "/a.jpg")
    assert (row["status"], row["attempts"]) == ("ok", 1)
    assert server.hits["/a.jpg"] == 1
    assert (out / "x1.jpg").read_bytes() == JPEG
    assert _leftovers(out) == []


def test_corrupt_file_under_the_final_name_is_fetched_again(server: Server, tmp_path: Path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "x1.jpg").write_bytes(b"<html>error</html>")  # e.g. saved by another tool
    row = _one(server, tmp_path, "/a.jpg")
    assert row["status"] == "ok"
    assert (out / "x1.jpg").read_bytes() == JPEG


# -- invalid rows and reconciliation -------------------------------------------------------------


def test_duplicate_ids_are_reported_and_the_first_wins(server: Server, tmp_path: Path):
    table = _table(
        tmp_path,
        [
            {"url": server.url("/a.jpg"), "sku": "Top1"},
            {"url": server.url("/b"), "sku": "Top1"},
            {"url": server.url("/b"), "sku": "top1"},  # same file on case-insensitive disks
        ],
    )
    result = download_images(table, tmp_path / "out", id_column="sku", **FAST)
    assert list(result.report["status"]) == ["ok", "invalid", "invalid"]
    assert list(result.report["reason"]) == ["", "duplicate_id", "duplicate_id"]
    assert result.report.at[1, "detail"] == "same id as row 1"
    assert server.hits["/b"] == 0


def test_same_url_twice_without_ids_is_a_duplicate(server: Server, tmp_path: Path):
    table = _table(tmp_path, [{"url": server.url("/a.jpg")}, {"url": server.url("/a.jpg")}])
    result = download_images(table, tmp_path / "out", **FAST)
    assert list(result.report["reason"]) == ["", "duplicate_url"]
    assert server.hits["/a.jpg"] == 1


def test_non_http_and_malformed_urls_are_rejected_without_a_request(server: Server, tmp_path: Path):
    table = _table(
        tmp_path,
        [
            {"url": "file:///etc/passwd", "sku": "a"},
            {"url": "ftp://127.0.0.1/x.jpg", "sku": "b"},
            {"url": "", "sku": "c"},
            {"url": "example.com/x.jpg", "sku": "d"},
            {"url": "http://", "sku": "e"},
            {"url": server.url("/a.jpg"), "sku": ""},
            {"url": server.url("/a.jpg"), "sku": "../escape"},
        ],
    )
    result = download_images(table, tmp_path / "out", id_column="sku", **FAST)
    assert list(result.report["reason"]) == [
        "unsupported_scheme",
        "unsupported_scheme",
        "empty_url",
        "malformed_url",
        "malformed_url",
        "empty_id",
        "bad_id",
    ]
    assert set(result.report["status"]) == {"invalid"}
    assert server.requests == 0
    assert not (tmp_path / "escape.jpg").exists()


def test_every_row_is_accounted_for(server: Server, tmp_path: Path):
    routes = ["/a.jpg", "/b", "/missing", "/page", "/fake.jpg", "/flaky", "/a.jpg"]
    rows = [{"url": server.url(r), "sku": f"s{i}"} for i, r in enumerate(routes)]
    rows += [{"url": "mailto:shop@example.com", "sku": "m"}, {"url": server.url("/b"), "sku": "s0"}]
    table = _table(tmp_path, rows)
    out = tmp_path / "out"
    out.mkdir()
    (out / "s6.jpg").write_bytes(JPEG)  # already present from an earlier run

    result = download_images(table, out, id_column="sku", **FAST)
    assert (result.ok, result.skipped, result.failed, result.invalid) == (3, 1, 3, 2)
    assert result.total == len(rows) == len(result.report)
    assert list(result.report["row"]) == list(range(1, len(rows) + 1))
    assert result.reasons() == Counter(
        {
            "http_404": 1,
            "bad_content_type": 1,
            "not_an_image": 1,
            "unsupported_scheme": 1,
            "duplicate_id": 1,
        }
    )
    done = pd.read_csv(result.downloaded_path, dtype=str)
    assert sorted(done["sku"]) == ["s0", "s1", "s5", "s6"]
    assert all((out / p).is_file() for p in done["path"])


def test_shop_path_column_is_kept_beside_the_download_path(server: Server, tmp_path: Path):
    table = _table(tmp_path, [{"url": server.url("/a.jpg"), "path": "cdn/a.jpg"}])
    result = download_images(table, tmp_path / "out", **FAST)
    done = pd.read_csv(result.downloaded_path)
    assert done.loc[0, "input_path"] == "cdn/a.jpg"
    assert done.loc[0, "path"].endswith(".jpg") and done.loc[0, "path"] != "cdn/a.jpg"


# -- user errors ---------------------------------------------------------------------------------


def test_missing_url_column_names_the_file_and_columns(tmp_path: Path):
    table = _table(tmp_path, [{"link": "http://127.0.0.1/x.jpg"}])
    with pytest.raises(DownloadError, match=r"urls\.csv: no column 'url' \(columns: link\)"):
        read_url_table(table)
    with pytest.raises(DownloadError, match="--id-column"):
        read_url_table(table, "link", "sku")


def test_bad_settings_are_user_errors(tmp_path: Path):
    table = _table(tmp_path, [{"url": "http://127.0.0.1/x.jpg"}])
    with pytest.raises(DownloadError, match="workers=0"):
        download_images(table, tmp_path / "out", workers=0)
    with pytest.raises(DownloadError, match="'application/pdf' is not an image format Pillow"):
        download_images(table, tmp_path / "out", allowed_types=["image/png", "application/pdf"])
    (tmp_path / "urls.txt").write_text("url\n")
    with pytest.raises(DownloadError, match=r"urls\.txt: expected a \.csv or \.parquet"):
        download_images(tmp_path / "urls.txt", tmp_path / "out")


def test_parse_size():
    assert parse_size("20000000") == 20_000_000
    assert parse_size("20MB") == 20_000_000
    assert parse_size("500 kB") == 500_000
    assert parse_size("1MiB") == 2**20
    with pytest.raises(DownloadError, match="twenty"):
        parse_size("twenty")


# -- CLI -----------------------------------------------------------------------------------------


def test_cli_downloads_and_prints_a_summary(server: Server, tmp_path: Path):
    table = _table(
        tmp_path,
        [
            {"url": server.url("/a.jpg"), "sku": "s1"},
            {"url": server.url("/missing"), "sku": "s2"},
        ],
    )
    out = tmp_path / "out"
    args = ["data", "download", str(table), "--out", str(out), "--id-column", "sku"]
    result = CliRunner().invoke(app, [*args, "--workers", "2", "--max-bytes", "1MB"])
    assert result.exit_code == 0, result.output
    assert "http_404 1" in result.output
    assert (out / "s1.jpg").exists()
    assert len(pd.read_csv(out / "download_report.csv")) == 2


def test_cli_user_error_exits_2_with_one_line(tmp_path: Path):
    table = _table(tmp_path, [{"link": "http://127.0.0.1/x.jpg"}])
    result = CliRunner().invoke(app, ["data", "download", str(table), "--out", str(tmp_path)])
    assert result.exit_code == 2
    assert "urls.csv: no column 'url' (columns: link)" in " ".join(result.output.split())
