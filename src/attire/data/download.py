"""Fetch product images from a catalogue export's URLs into a folder, resumably, with a report.

A shop's export is a CSV/Parquet table with one image URL per row (plus an optional id and any
label columns). Every row ends up in ``download_report.csv`` with a status and a reason, so nothing
is lost silently; ``downloaded.csv`` holds the input rows of the images now on disk with a ``path``
column, ready for ``attire data ingest table``.

Files are streamed to ``<id>.part`` and renamed to ``<id><ext>`` only once complete and decodable,
so a rerun skips what is already there without a request and refetches the rest.
"""

from __future__ import annotations

import email.utils
import hashlib
import mimetypes
import os
import random
import time
from collections import Counter
from collections.abc import Iterable
from concurrent.futures import Future, ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pandas as pd
from PIL import Image
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from attire import __version__
from attire.errors import AttireError

DEFAULT_TYPES = ("image/jpeg", "image/png", "image/webp", "image/gif")
REPORT_NAME = "download_report.csv"
DOWNLOADED_NAME = "downloaded.csv"
REPORT_COLUMNS = ("row", "url", "id", "path", "status", "reason", "detail", "attempts", "bytes")
STATUSES = ("ok", "skipped", "failed", "invalid")
PART_SUFFIX = ".part"
_EXTENSIONS = {
    "image/jpeg": ".jpg",
    "image/png": ".png",
    "image/webp": ".webp",
    "image/gif": ".gif",
}
_CHUNK = 64 * 1024


class DownloadError(AttireError):
    """A URL table or a download setting that cannot be used as given."""


@dataclass(frozen=True)
class DownloadResult:
    """What a run did: one report row per input row, and the counts that reconcile with it."""

    report: pd.DataFrame
    out_dir: Path
    report_path: Path
    downloaded_path: Path
    ok: int
    skipped: int
    failed: int
    invalid: int

    @property
    def total(self) -> int:
        """Rows read from the table; always ok + skipped + failed + invalid."""
        return self.ok + self.skipped + self.failed + self.invalid

    def reasons(self) -> Counter[str]:
        """How many rows failed or were invalid for each reason."""
        bad = self.report[self.report["status"].isin(["failed", "invalid"])]
        return Counter(bad["reason"].tolist())


@dataclass(frozen=True)
class _Settings:
    out_dir: Path
    retries: int
    max_bytes: int
    backoff: float
    max_wait: float
    formats: tuple[str, ...]  # Pillow formats the allowed types decode as
    extensions: dict[str, str]  # allowed content type -> file extension


@dataclass(frozen=True)
class _Outcome:
    status: str
    reason: str = ""
    detail: str = ""
    attempts: int = 0
    bytes: int = 0
    path: str = ""


@dataclass(frozen=True)
class _Retry:
    """A transient failure: worth another attempt after a wait (Retry-After if the server said)."""

    reason: str
    detail: str
    retry_after: float | None = None


def download_images(
    table: Path,
    out_dir: Path,
    *,
    url_column: str = "url",
    id_column: str | None = None,
    workers: int = 8,
    retries: int = 3,
    timeout: float = 20.0,
    max_bytes: int = 20_000_000,
    allowed_types: Iterable[str] = DEFAULT_TYPES,
    backoff: float = 0.5,
    max_retry_wait: float = 60.0,
    show_progress: bool = True,
) -> DownloadResult:
    """Download every valid URL of ``table`` into ``out_dir`` and write the two CSVs there.

    ``retries`` is the number of extra attempts after a timeout, connection error, 5xx or 429;
    waits grow as ``backoff * 2**n`` with jitter, or follow Retry-After, never beyond
    ``max_retry_wait`` seconds. ``timeout`` applies to connecting and to each read.
    """
    table, out_dir, allowed_types = Path(table), Path(out_dir), tuple(allowed_types)
    _check_settings(workers, retries, timeout, max_bytes, backoff, max_retry_wait)
    settings = _Settings(
        out_dir=out_dir,
        retries=retries,
        max_bytes=max_bytes,
        backoff=backoff,
        max_wait=max_retry_wait,
        formats=_pillow_formats(allowed_types),
        extensions=_extensions(allowed_types),
    )
    df = read_url_table(table, url_column, id_column)
    if out_dir.exists() and not out_dir.is_dir():
        raise DownloadError(f"--out {out_dir} is a file; give a folder")
    out_dir.mkdir(parents=True, exist_ok=True)
    for leftover in out_dir.glob(f"*{PART_SUFFIX}"):  # from a run that was killed mid-file
        leftover.unlink()

    urls, stems, invalid = _validate_rows(df, url_column, id_column)
    outcomes: dict[int, _Outcome] = dict(invalid)
    todo = [i for i in range(len(df)) if i not in invalid]
    outcomes.update(_run_pool(todo, urls, stems, settings, workers, timeout, show_progress))

    report = pd.DataFrame(
        [
            {"row": i + 1, "url": urls[i], "id": stems[i], **_row_fields(outcomes[i])}
            for i in range(len(df))
        ],
        columns=list(REPORT_COLUMNS),
    )
    counts = report["status"].value_counts()
    report_path = _write_csv(report, out_dir / REPORT_NAME)
    downloaded_path = _write_csv(_downloaded_rows(df, report), out_dir / DOWNLOADED_NAME)
    return DownloadResult(
        report=report,
        out_dir=out_dir,
        report_path=report_path,
        downloaded_path=downloaded_path,
        **{s: int(counts.get(s, 0)) for s in STATUSES},
    )


def read_url_table(
    table: Path, url_column: str = "url", id_column: str | None = None
) -> pd.DataFrame:
    """Read a CSV (all values as text, so labels pass through unchanged) or a Parquet table."""
    table = Path(table)
    if not table.exists():
        raise DownloadError(f"{table}: URL table not found")
    suffix = table.suffix.lower()
    try:
        if suffix == ".csv":
            df = pd.read_csv(table, dtype=str, keep_default_na=False)
        elif suffix in (".parquet", ".pq"):
            df = pd.read_parquet(table)
        else:
            raise DownloadError(f"{table}: expected a .csv or .parquet file, got '{suffix}'")
    except (pd.errors.ParserError, pd.errors.EmptyDataError, OSError, ValueError) as e:
        if isinstance(e, DownloadError):
            raise
        raise DownloadError(f"{table}: cannot read the URL table ({e})") from None
    for flag, col in (("--url-column", url_column), ("--id-column", id_column)):
        if col is not None and col not in df.columns:
            raise DownloadError(
                f"{table}: no column '{col}' (columns: {', '.join(map(str, df.columns))}); "
                f"name the right one with {flag}"
            )
    return df.reset_index(drop=True)


def url_stem(url: str) -> str:
    """The file name stem of a URL without an id: stable across runs and machines."""
    return hashlib.sha1(url.encode("utf-8")).hexdigest()[:16]


def retry_after_seconds(value: str | None, now: datetime | None = None) -> float | None:
    """Seconds to wait from a Retry-After header (delta-seconds or HTTP-date); None if absent."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())


# -- settings and input rows ---------------------------------------------------------------------


def _check_settings(
    workers: int, retries: int, timeout: float, max_bytes: int, backoff: float, max_wait: float
) -> None:
    for name, value, ok in (
        ("workers", workers, workers >= 1),
        ("retries", retries, retries >= 0),
        ("timeout", timeout, timeout > 0),
        ("max_bytes", max_bytes, max_bytes > 0),
        ("backoff", backoff, backoff >= 0),
        ("max_retry_wait", max_wait, max_wait >= 0),
    ):
        if not ok:
            raise DownloadError(f"{name}={value} is out of range")


def _extensions(allowed_types: Iterable[str]) -> dict[str, str]:
    out = {}
    for t in allowed_types:
        t = t.strip().lower()
        ext = _EXTENSIONS.get(t) or mimetypes.guess_extension(t, strict=False)
        if ext is None:
            raise DownloadError(f"allowed type '{t}' has no known file extension")
        out[t] = ext
    if not out:
        raise DownloadError("no allowed content types given")
    return out


def _pillow_formats(allowed_types: Iterable[str]) -> tuple[str, ...]:
    """Pillow formats the allowed types decode as; opening only those keeps e.g. EPS out."""
    Image.init()
    formats: list[str] = []
    for t in allowed_types:
        t = t.strip().lower()
        found = [f for f, mime in Image.MIME.items() if mime == t and f in Image.OPEN]
        if not found:
            raise DownloadError(f"allowed type '{t}' is not an image format Pillow can decode")
        formats += found
    return tuple(dict.fromkeys(formats))


def _validate_rows(
    df: pd.DataFrame, url_column: str, id_column: str | None
) -> tuple[list[str], list[str], dict[int, _Outcome]]:
    """URLs and file stems per row, and the rows that cannot be fetched (with why)."""
    urls = [_text(v) for v in df[url_column].tolist()]
    ids = [_text(v) for v in df[id_column].tolist()] if id_column else None
    stems = ids if ids is not None else [url_stem(u) for u in urls]
    invalid: dict[int, _Outcome] = {}
    first_row: dict[str, int] = {}
    for i, url in enumerate(urls):
        problem = _url_problem(url) or _id_problem(stems[i], ids is not None)
        if problem is None:
            key = stems[i].casefold()  # "A.jpg" and "a.jpg" are one file on macOS and Windows
            if key in first_row:
                what = "id" if ids is not None else "url"
                problem = (f"duplicate_{what}", f"same {what} as row {first_row[key] + 1}")
            else:
                first_row[key] = i
        if problem is not None:
            invalid[i] = _Outcome("invalid", *problem)
    return urls, stems, invalid


def _text(v: object) -> str:
    if v is None or (isinstance(v, float) and v != v) or v is pd.NA:
        return ""
    return str(v).strip()


def _url_problem(url: str) -> tuple[str, str] | None:
    if not url:
        return "empty_url", ""
    try:
        parsed = httpx.URL(url)
    except httpx.InvalidURL as e:
        return "malformed_url", str(e)
    if not parsed.scheme:
        return "malformed_url", "no scheme (expected http:// or https://)"
    if parsed.scheme not in ("http", "https"):
        return "unsupported_scheme", f"'{parsed.scheme}' (only http and https are fetched)"
    if not parsed.host:
        return "malformed_url", "no host"
    return None


def _id_problem(stem: str, from_column: bool) -> tuple[str, str] | None:
    if not from_column:
        return None
    if not stem:
        return "empty_id", ""
    if any(c in stem for c in '/\\:*?"<>|\0') or stem.startswith(".") or len(stem) > 200:
        return "bad_id", f"'{stem}' cannot be a file name"
    return None


# -- fetching ------------------------------------------------------------------------------------


def _run_pool(
    todo: list[int],
    urls: list[str],
    stems: list[str],
    settings: _Settings,
    workers: int,
    timeout: float,
    show_progress: bool,
) -> dict[int, _Outcome]:
    outcomes: dict[int, _Outcome] = {}
    tally = Counter()
    progress = Progress(
        SpinnerColumn(),
        TextColumn("[bold]download[/]"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.description}"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=Console(stderr=True),
        disable=not show_progress,
    )
    limits = httpx.Limits(max_connections=workers, max_keepalive_connections=workers)
    headers = {"User-Agent": f"attire/{__version__} (image download)"}
    with (
        progress,
        httpx.Client(
            timeout=timeout, limits=limits, headers=headers, follow_redirects=True
        ) as client,
        ThreadPoolExecutor(max_workers=workers, thread_name_prefix="download") as pool,
    ):
        bar = progress.add_task(_tally_text(tally), total=len(todo))
        futures: dict[Future[_Outcome], int] = {
            pool.submit(_fetch, client, urls[i], stems[i], settings): i for i in todo
        }
        try:
            for fut in as_completed(futures):
                outcome = fut.result()
                outcomes[futures[fut]] = outcome
                tally[outcome.status] += 1
                progress.update(bar, advance=1, description=_tally_text(tally))
        except BaseException:  # Ctrl-C: stop queued work; .part files are cleaned on the rerun
            pool.shutdown(wait=False, cancel_futures=True)
            raise
    return outcomes


def _tally_text(tally: Counter) -> str:
    return (
        f"[green]ok {tally['ok']}[/]  [cyan]skipped {tally['skipped']}[/]  "
        f"[red]failed {tally['failed']}[/]"
    )


def _fetch(client: httpx.Client, url: str, stem: str, s: _Settings) -> _Outcome:
    """One row: skip if already on disk, else attempt with retries; never raises for bad input."""
    present = _existing_file(s, stem)
    if present is not None:
        return _Outcome("skipped", "already_present", "", 0, present.stat().st_size, present.name)
    attempts = 0
    while True:
        attempts += 1
        try:
            result = _attempt(client, url, stem, s)
        except httpx.TimeoutException as e:
            result = _Retry("timeout", f"{type(e).__name__}: {e}")
        except httpx.UnsupportedProtocol as e:  # e.g. a redirect to ftp://
            result = _Outcome("failed", "unsupported_scheme", str(e))
        except (httpx.NetworkError, httpx.ProtocolError, httpx.ProxyError) as e:
            result = _Retry("connection_error", f"{type(e).__name__}: {e}")
        except httpx.TooManyRedirects as e:
            result = _Outcome("failed", "too_many_redirects", str(e))
        except httpx.HTTPError as e:
            result = _Outcome("failed", "http_error", f"{type(e).__name__}: {e}")
        except OSError as e:  # writing to the output folder failed (disk full, permissions)
            result = _Outcome("failed", "write_error", f"{type(e).__name__}: {e}")
        if isinstance(result, _Outcome):
            return _Outcome(
                result.status, result.reason, result.detail, attempts, result.bytes, result.path
            )
        if attempts > s.retries:
            return _Outcome("failed", result.reason, result.detail, attempts)
        time.sleep(_wait(attempts, result.retry_after, s))


def _wait(attempt: int, retry_after: float | None, s: _Settings) -> float:
    """Retry-After when the server gave one, else exponential backoff with jitter; both capped."""
    if retry_after is not None:
        return min(retry_after, s.max_wait)
    return min(s.backoff * 2 ** (attempt - 1) * random.uniform(0.5, 1.5), s.max_wait)


def _attempt(client: httpx.Client, url: str, stem: str, s: _Settings) -> _Outcome | _Retry:
    with client.stream("GET", url) as r:
        code = r.status_code
        if code == 429 or code >= 500:
            return _Retry(
                f"http_{code}", r.reason_phrase, retry_after_seconds(r.headers.get("retry-after"))
            )
        if not r.is_success:
            return _Outcome("failed", f"http_{code}", r.reason_phrase)
        ctype = r.headers.get("content-type", "").split(";")[0].strip().lower()
        if ctype not in s.extensions:
            return _Outcome("failed", "bad_content_type", ctype or "no Content-Type")
        length = r.headers.get("content-length", "")
        if length.isdigit() and int(length) > s.max_bytes:
            return _Outcome("failed", "too_large", f"Content-Length {length} > {s.max_bytes}")
        tmp = s.out_dir / f"{stem}{PART_SUFFIX}"
        try:
            size = 0
            with open(tmp, "wb") as f:
                for chunk in r.iter_bytes(_CHUNK):
                    size += len(chunk)
                    if size > s.max_bytes:
                        return _Outcome("failed", "too_large", f"more than {s.max_bytes} bytes")
                    f.write(chunk)
            problem = _image_problem(tmp, s.formats)
            if problem is not None:
                return _Outcome("failed", "not_an_image", problem, bytes=size)
            final = s.out_dir / f"{stem}{s.extensions[ctype]}"
            os.replace(tmp, final)
            return _Outcome("ok", "", "", bytes=size, path=final.name)
        finally:
            tmp.unlink(missing_ok=True)


def _existing_file(s: _Settings, stem: str) -> Path | None:
    """A finished file for this stem (any allowed extension) that still looks like an image.

    Only Pillow's structural check runs here (no full decode), so resuming over a large folder
    stays fast; files under their final name were complete when this tool wrote them.
    """
    for ext in dict.fromkeys(s.extensions.values()):
        path = s.out_dir / f"{stem}{ext}"
        if path.is_file() and _image_problem(path, s.formats, decode=False) is None:
            return path
    return None


def _image_problem(path: Path, formats: tuple[str, ...], decode: bool = True) -> str | None:
    """Why the file is not a usable image, or None. verify() checks structure, load() decodes
    (a JPEG at 1/8 scale: cheaper, and a cut-short file still fails)."""
    try:
        with Image.open(path, formats=formats) as im:
            im.verify()
        if decode:
            with Image.open(path, formats=formats) as im:
                im.draft("RGB", (1, 1))
                im.load()
    except Exception as e:  # Pillow signals bad data with many exception types
        return f"{type(e).__name__}: {e}"
    return None


# -- outputs -------------------------------------------------------------------------------------


def _row_fields(o: _Outcome) -> dict[str, object]:
    return {
        "path": o.path,
        "status": o.status,
        "reason": o.reason,
        "detail": o.detail,
        "attempts": o.attempts,
        "bytes": o.bytes,
    }


def _downloaded_rows(df: pd.DataFrame, report: pd.DataFrame) -> pd.DataFrame:
    """Input rows whose image is on disk, with ``path`` (relative to the output folder) added."""
    on_disk = report["status"].isin(["ok", "skipped"]).to_numpy()
    out = df.loc[on_disk].copy()
    if "path" in out.columns:  # keep the shop's own column instead of overwriting it
        out = out.rename(columns={"path": "input_path"})
    out["path"] = report.loc[on_disk, "path"].to_numpy()
    return out


def _write_csv(df: pd.DataFrame, path: Path) -> Path:
    """Atomic write, so a reader never sees half a report."""
    tmp = path.with_name(f".{path.name}.tmp")
    df.to_csv(tmp, index=False)
    os.replace(tmp, path)
    return path
