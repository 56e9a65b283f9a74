"""A client that keeps a local workspace in sync with the service, losing no change.

    from core.client import RemoteUploadClient

    with RemoteUploadClient("http://127.0.0.1:8002", "/home/me/myrepo") as client:
        result = client.sync()
"""

from core.client.client import RemoteUploadClient, SyncResult

__all__ = ["RemoteUploadClient", "SyncResult"]
