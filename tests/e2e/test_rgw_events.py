"""The whole event path on a real Ceph RGW: no hand-made events.

An RGW topic pushes to the running service's /api/v1/delta/events, a bucket
notification on `incoming/` fires it, and the project's own client PUTs its
bundle through a presigned URL. The workspace must reach the new sequence with
its files applied and indexed.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path

import boto3
import pytest

from core.client import RemoteUploadClient
from tests.support.ceph_rgw import RgwEndpoint
from tests.support.service import ServiceProcess

PREFIX = "svc"


@pytest.fixture
def notified_service(rgw_endpoint: RgwEndpoint, tmp_path: Path) -> Iterator[tuple[ServiceProcess, str]]:
    bucket = f"events-{uuid.uuid4().hex[:10]}"
    rgw_endpoint.create_bucket(bucket)
    env = {"STORAGE_URL": f"s3://{bucket}/{PREFIX}", "S3_ENDPOINT_URL": rgw_endpoint.url,
           "SCRATCH_DIR": str(tmp_path / "scratch"), "QDRANT_URL": ":memory:"}
    (tmp_path / "scratch").mkdir()
    service = ServiceProcess(env, tmp_path / "service.log").start()
    sns = boto3.session.Session().client(
        "sns", endpoint_url=rgw_endpoint.url, region_name="default",
        aws_access_key_id=rgw_endpoint.access_key, aws_secret_access_key=rgw_endpoint.secret_key)
    topic = sns.create_topic(Name=f"bundles-{uuid.uuid4().hex[:6]}", Attributes={
        "push-endpoint": service.url + "/api/v1/delta/events", "persistent": "false"})
    rgw_endpoint.client().put_bucket_notification_configuration(
        Bucket=bucket,
        NotificationConfiguration={"TopicConfigurations": [{
            "Id": "incoming-bundles", "TopicArn": topic["TopicArn"],
            "Events": ["s3:ObjectCreated:*"],
            "Filter": {"Key": {"FilterRules": [{"Name": "prefix", "Value": f"{PREFIX}/incoming/"}]}},
        }]},
    )
    try:
        yield service, bucket
    finally:
        assert service.stop() == 0
        sns.delete_topic(TopicArn=topic["TopicArn"])


def test_presigned_put_on_rgw_fires_the_pipeline(
    notified_service: tuple[ServiceProcess, str], rgw_endpoint: RgwEndpoint, tmp_path: Path
) -> None:
    service, bucket = notified_service
    workspace = tmp_path / "repo"
    (workspace / "src").mkdir(parents=True)
    (workspace / "src" / "greet.py").write_text(
        'def greet(name):\n    """Say hello to someone by name."""\n    return f"hello {name}"\n')
    (workspace / "README.md").write_text("# repo\n")
    with RemoteUploadClient(service.url, workspace, collection_name="rgw-events",
                            cache_dir=tmp_path / "cache", direct_upload_mb=0) as client:
        result = client.sync()
        assert result.success, result.error
        status = client.status()
    assert status["last_sequence"] == 1 == result.last_sequence
    ws = status["workspace_key"]
    s3 = rgw_endpoint.client()
    tree = s3.list_objects_v2(Bucket=bucket, Prefix=f"{PREFIX}/workspaces/{ws}/tree/")
    assert sorted(o["Key"].rsplit("/tree/", 1)[1] for o in tree["Contents"]) == ["README.md", "src/greet.py"]
    journal = s3.get_object(Bucket=bucket, Key=f"{PREFIX}/workspaces/{ws}/journal/000000000001.json")
    entry = json.loads(journal["Body"].read())
    assert entry["indexing"]["points_upserted"] >= 2
    leftover = s3.list_objects_v2(Bucket=bucket, Prefix=f"{PREFIX}/incoming/")
    assert leftover.get("KeyCount", 0) == 0
