"""A full disk or quota is one error, `StorageFull`: a 503 with Retry-After, wherever it is met.

The filesystem's ENOSPC and EDQUOT on a real full disk are driven end to end in
tests/e2e/test_storage_full.py; here the mapping itself, and the S3 store's for
RGW's `QuotaExceeded` (an error reply as botocore builds it from the wire).
"""

from __future__ import annotations

import errno

import pytest
from botocore.exceptions import ClientError

from core.errors import StorageFull, StorageUnavailable, disk_full_is_retryable, error_response
from core.storage.s3 import _mapped


@pytest.mark.parametrize(("code", "says"), [(errno.ENOSPC, "has no space left"),
                                            (errno.EDQUOT, "quota is used up")])
def test_a_full_disk_or_quota_is_storage_full(code: int, says: str) -> None:
    with pytest.raises(StorageFull) as raised, disk_full_is_retryable("scratch folder"):
        raise OSError(code, "full", "/srv/storage/.scratch/raw-123.tar.gz")
    status, body, headers = error_response(raised.value)
    assert status == 503 and headers == {"Retry-After": "30"}
    assert body["error"] == {"code": "STORAGE_FULL", "retry_after": 30_000,
                             "message": f"the scratch folder {says}; retry once space is freed"}
    assert isinstance(raised.value, StorageUnavailable)  # transient: event handlers re-raise it


def test_other_os_errors_pass_unchanged() -> None:
    with pytest.raises(PermissionError), disk_full_is_retryable("storage folder"):
        raise PermissionError(errno.EACCES, "denied")


def test_an_rgw_quota_reply_is_storage_full() -> None:
    reply = {"Error": {"Code": "QuotaExceeded", "Message": ""},
             "ResponseMetadata": {"HTTPStatusCode": 403}}
    with pytest.raises(StorageFull), _mapped("workspaces/ws/tree/a.py"):
        raise ClientError(reply, "PutObject")
