"""The upload's multipart body, read as a stream: small fields capped, the bundle spooled.

werkzeug's form parser reads the whole body before the handler sees a field, so a
credential sent in the `session` field (the existing clients) was only checked
after up to MAX_BUNDLE_SIZE_MB had been received. Here the parts are taken as
they arrive (werkzeug's sans-IO `MultipartDecoder`):

    a text field      at most FIELD_LIMIT bytes, at most MAX_FIELDS of them, in memory
    `session`         handed to `on_session` as soon as it is complete (authenticate
                      there: a bad one is refused before the rest is read)
    the `bundle` file spooled to a temporary file (disk, never memory), at most
                      the bundle limit; another file part is read and discarded;
                      a full scratch disk is `StorageFull` (503, Retry-After)

When the session comes after the bundle, the bundle is on disk by then, under
its cap. The whole body is at most the bundle limit plus FORM_OVERHEAD.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import IO

import flask
from werkzeug.exceptions import RequestEntityTooLarge
from werkzeug.http import parse_options_header
from werkzeug.sansio.multipart import Data, Epilogue, Field, File, MultipartDecoder, NeedData

from core.errors import BundleTooLarge, FormFieldTooLarge, InvalidRequest, disk_full_is_retryable

FORM_OVERHEAD = 1024 * 1024
FIELD_LIMIT = 64 * 1024
MAX_FIELDS = 32
CHUNK = 64 * 1024


@dataclass
class UploadForm:
    fields: dict[str, str] = field(default_factory=dict)
    bundle: IO[bytes] | None = None


@disk_full_is_retryable("scratch folder")  # the spooled bundle on a full disk: 503 STORAGE_FULL
def read_upload_form(request: flask.Request, bundle_limit: int, scratch: str | None,
                     on_session: Callable[[str], None]) -> UploadForm:
    """Parse the upload's multipart body; the caller closes `bundle`."""
    mimetype, options = parse_options_header(request.headers.get("Content-Type", ""))
    if mimetype != "multipart/form-data" or not options.get("boundary"):
        raise InvalidRequest("the upload must be multipart/form-data")
    total_limit = bundle_limit + FORM_OVERHEAD
    if request.content_length is not None and request.content_length > total_limit:
        raise BundleTooLarge("request body exceeds MAX_BUNDLE_SIZE_MB")
    decoder = MultipartDecoder(options["boundary"].encode("latin-1"),
                               max_form_memory_size=2 * CHUNK + FIELD_LIMIT,
                               max_parts=MAX_FIELDS + 1)
    form, stream, received = UploadForm(), request.environ["wsgi.input"], 0
    part: Field | File | None = None
    value, sink, sunk = bytearray(), None, 0
    try:
        while True:
            event = decoder.next_event()
            if isinstance(event, NeedData):
                chunk = stream.read(min(CHUNK, total_limit + 1 - received))
                received += len(chunk)
                if received > total_limit:
                    raise BundleTooLarge("request body exceeds MAX_BUNDLE_SIZE_MB")
                if not chunk and decoder.complete:
                    raise InvalidRequest("the multipart body ends before its closing boundary")
                decoder.receive_data(chunk or None)
            elif isinstance(event, Epilogue):
                return form
            elif isinstance(event, File | Field):
                part, value, sunk = event, bytearray(), 0
                if isinstance(event, File) and event.name == "bundle" and form.bundle is None:
                    sink = form.bundle = tempfile.TemporaryFile(prefix="upload-", dir=scratch)  # noqa: SIM115
                else:
                    sink = None
            elif isinstance(event, Data) and part is not None:
                if isinstance(part, File):
                    sunk += len(event.data)
                    if sink is not None:
                        if sunk > bundle_limit:
                            raise BundleTooLarge(f"bundle exceeds {bundle_limit // (1024 * 1024)} MB")
                        sink.write(event.data)
                else:
                    value += event.data
                    if len(value) > FIELD_LIMIT:
                        raise FormFieldTooLarge(f"a form field exceeds {FIELD_LIMIT // 1024} KiB")
                if not event.more_data:
                    _finish(form, part, bytes(value), on_session)
                    part = None
    except RequestEntityTooLarge:  # the decoder's own caps: its buffer, the number of parts
        _close(form)
        raise FormFieldTooLarge(f"more than {MAX_FIELDS} form fields, or a part header too large") from None
    except ValueError:
        _close(form)
        raise InvalidRequest("malformed multipart body") from None
    except BaseException:
        _close(form)
        raise


def _close(form: UploadForm) -> None:
    if form.bundle is not None:
        form.bundle.close()


def _finish(form: UploadForm, part: Field | File, value: bytes,
            on_session: Callable[[str], None]) -> None:
    if isinstance(part, File):
        if form.bundle is not None and part.name == "bundle":
            form.bundle.seek(0)
        return
    if len(form.fields) >= MAX_FIELDS:
        raise FormFieldTooLarge(f"more than {MAX_FIELDS} form fields")
    text = value.decode("utf-8", "replace")
    form.fields.setdefault(part.name, text)
    if part.name == "session" and text:
        on_session(text)
