"""Direct-to-bucket uploads: presigned PUT, then the object-created event, in every shape.

The service runs on the S3 backend (a moto server); events are the real JSON
shapes of tests/events/ with the bucket and key filled in, posted as RGW, AWS,
Knative CephSource and Eventarc would post them.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote_plus

import pytest
import requests

from tests.support.bundles import BundleBuilder
from tests.support.moto_server import create_bucket, s3_client
from tests.support.service import ServiceProcess

EVENTS = Path(__file__).resolve().parents[1] / "events"
PREFIX = "svc"


def event(name: str, bucket: str, key: str) -> dict[str, Any]:
    text = (EVENTS / name).read_text()
    text = text.replace("{bucket}", bucket).replace("{key_urlencoded}", quote_plus(key))
    return dict(json.loads(text.replace("{key}", key)))


@pytest.fixture(scope="module")
def bucket(moto_endpoint: str) -> str:
    name = f"direct-{uuid.uuid4().hex[:10]}"
    create_bucket(moto_endpoint, name)
    return name


@pytest.fixture(scope="module")
def env(moto_endpoint: str, bucket: str, tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    return {"STORAGE_URL": f"s3://{bucket}/{PREFIX}", "S3_ENDPOINT_URL": moto_endpoint,
            "SCRATCH_DIR": str(tmp_path_factory.mktemp("scratch")), "INDEXING_ENABLED": "false"}


@pytest.fixture(scope="module")
def service(env: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServiceProcess]:
    running = ServiceProcess(env, tmp_path_factory.mktemp("logs") / "service.log").start()
    yield running
    assert running.stop() == 0


def presign(service: ServiceProcess, workspace: str, **fields: Any) -> dict[str, Any]:
    answer = requests.post(service.url + "/api/v1/delta/upload-url",
                           json={"workspace_path": workspace, **fields}, timeout=30)
    assert answer.status_code == 200, answer.text
    return dict(answer.json())


def put(url: str, body: bytes) -> None:
    assert requests.put(url, data=body, timeout=30).status_code == 200


def incoming(bucket_key: dict[str, Any]) -> str:
    """The bucket key an upload URL names (incoming/<ws>/<bundle id>/<token>.tar.gz)."""
    return PREFIX + "/incoming/" + str(bucket_key["upload_url"]).split("/incoming/", 1)[1].split("?")[0]


def post_event(service: ServiceProcess, body: dict[str, Any], mode: str = "plain") -> requests.Response:
    url = service.url + "/api/v1/delta/events"
    if mode == "structured":
        return requests.post(url, data=json.dumps(body), timeout=60,
                             headers={"Content-Type": "application/cloudevents+json"})
    if mode == "binary":
        headers = {f"ce-{k}": str(v) for k, v in body.items() if k not in ("data", "datacontenttype")}
        headers["Content-Type"] = "application/json"
        return requests.post(url, data=json.dumps(body["data"]), headers=headers, timeout=60)
    return requests.post(url, json=body, timeout=60)


def bundle_state(service: ServiceProcess, workspace: str, bundle_id: str) -> dict[str, Any]:
    return dict(requests.get(f"{service.url}/api/v1/delta/bundles/{bundle_id}",
                             params={"workspace_path": workspace}, timeout=30).json())


@pytest.mark.parametrize(("shape", "mode"), [
    ("rgw-put.json", "plain"), ("aws-put.json", "plain"), ("cephsource-put.json", "binary"),
    ("cephsource-put.json", "structured"), ("eventarc-finalized.json", "structured"),
], ids=["rgw-push", "aws-s3", "cephsource-binary", "cephsource-structured", "eventarc"])
def test_every_event_shape_runs_the_pipeline_once(
    service: ServiceProcess, bucket: str, moto_endpoint: str, shape: str, mode: str
) -> None:
    workspace = f"/work/direct-{uuid.uuid4().hex[:6]}"
    issued = presign(service, workspace, collection_name="direct")
    assert bundle_state(service, workspace, issued["bundle_id"])["state"] == "awaiting_upload"
    raw = BundleBuilder(bundle_id=issued["bundle_id"]).created("big.py", b"x = 1\n").build()
    put(issued["upload_url"], raw)
    assert bundle_state(service, workspace, issued["bundle_id"])["state"] == "uploaded"
    body = event(shape, bucket, incoming(issued))
    answer = post_event(service, body, mode)
    assert answer.status_code == 200, answer.text
    assert answer.json()["outcomes"][0]["outcome"] == "processed"
    state = bundle_state(service, workspace, issued["bundle_id"])
    assert state["state"] == "committed" and state["result"]["sequence_number"] == 1
    assert service.status(workspace).json()["last_sequence"] == 1
    objects = s3_client(moto_endpoint).list_objects_v2(Bucket=bucket, Prefix=incoming(issued))
    assert objects.get("KeyCount", 0) == 0, "the incoming object is removed once committed"
    again = post_event(service, body, mode)  # the intent went with the commit: nothing to act on
    assert again.status_code == 200 and again.json()["outcomes"][0]["outcome"] == "ignored"
    assert service.status(workspace).json()["last_sequence"] == 1


def test_removals_other_prefixes_and_other_buckets_are_ignored(
    service: ServiceProcess, bucket: str
) -> None:
    for body in (event("rgw-delete.json", bucket, f"{PREFIX}/incoming/ws-1/abc.tar.gz"),
                 event("rgw-put.json", bucket, f"{PREFIX}/bundles/ws-1/abc.tar.gz"),
                 event("rgw-put.json", "another-bucket", f"{PREFIX}/incoming/ws-1/abc.tar.gz"),
                 event("rgw-put.json", bucket, "elsewhere/incoming/ws-1/abc.tar.gz")):
        answer = post_event(service, body)
        assert answer.status_code == 200 and answer.json()["outcomes"][0]["outcome"] == "ignored"


def test_a_bad_bundle_is_refused_and_the_refusal_is_readable(
    service: ServiceProcess, bucket: str, moto_endpoint: str
) -> None:
    workspace = f"/work/refused-{uuid.uuid4().hex[:6]}"
    issued = presign(service, workspace)
    put(issued["upload_url"], b"this is not a tar.gz")
    answer = post_event(service, event("rgw-put.json", bucket, incoming(issued)))
    assert answer.status_code == 200 and answer.json()["outcomes"][0]["outcome"] == "refused"
    state = bundle_state(service, workspace, issued["bundle_id"])
    assert state == {"bundle_id": issued["bundle_id"], "state": "refused",
                     "error": state["error"]} and state["error"]["code"] == "INVALID_BUNDLE"
    other = presign(service, workspace)
    put(other["upload_url"], BundleBuilder().created("a", b"1").build())  # another bundle id inside
    answer = post_event(service, event("rgw-put.json", bucket, incoming(other)))
    assert answer.json()["outcomes"][0]["outcome"] == "refused"
    assert bundle_state(service, workspace, other["bundle_id"])["error"]["code"] == "BUNDLE_ID_MISMATCH"
    assert service.status(workspace).json()["last_sequence"] == 0


def test_the_cloud_event_target_runs_on_its_own(
    env: dict[str, str], bucket: str, service: ServiceProcess, tmp_path: Path
) -> None:
    workspace = f"/work/ce-{uuid.uuid4().hex[:6]}"
    issued = presign(service, workspace)
    put(issued["upload_url"], BundleBuilder(bundle_id=issued["bundle_id"]).created("a", b"1").build())
    function = ServiceProcess(env, tmp_path / "ce.log", target="on_bundle_uploaded").start()
    headers = {"Content-Type": "application/cloudevents+json"}
    body = event("eventarc-finalized.json", bucket, incoming(issued))
    try:
        # events it can never process are acknowledged (a failure would be delivered again)
        for poison in ({**body, "type": "com.example.other"}, {**body, "subject": 7}, {**body, "data": {}}):
            answer = requests.post(function.url + "/", data=json.dumps(poison), headers=headers, timeout=60)
            assert answer.status_code == 200, answer.text
        assert service.status(workspace).json()["last_sequence"] == 0
        answer = requests.post(function.url + "/", data=json.dumps(body), headers=headers, timeout=60)
        assert answer.status_code == 200, answer.text
    finally:
        assert function.stop() == 0
    assert service.status(workspace).json()["last_sequence"] == 1
    assert (tmp_path / "ce.log").read_text().count("ignored") == 3


def test_unknown_events_are_a_clear_400(service: ServiceProcess) -> None:
    answer = requests.post(service.url + "/api/v1/delta/events", json={"hello": "world"}, timeout=30)
    assert answer.status_code == 400 and answer.json()["error"]["code"] == "UNKNOWN_EVENT"


def test_a_cloud_event_whose_subject_is_not_text_is_a_400(service: ServiceProcess, bucket: str) -> None:
    """A structured CloudEvent is any JSON: a number as its subject (the object's key) is
    refused, not a 500 that the platform would deliver again and again."""
    issued = presign(service, f"/work/ce-subject-{uuid.uuid4().hex[:6]}")
    body = event("cephsource-put.json", bucket, incoming(issued))
    for subject in (5, True, ["k"]):
        answer = post_event(service, {**body, "subject": subject}, "structured")
        assert answer.status_code == 400, (subject, answer.text)
        assert answer.json()["error"]["code"] == "UNKNOWN_EVENT"


def test_upload_url_takes_a_json_integer_sequence_and_boolean_force(
    service: ServiceProcess, moto_endpoint: str, bucket: str
) -> None:
    issued = presign(service, f"/work/typed-{uuid.uuid4().hex[:6]}", sequence_number=3, force=True)
    key = f"{PREFIX}/workspaces/{issued['workspace_key']}/intents/{issued['bundle_id']}.json"
    intent = json.loads(s3_client(moto_endpoint).get_object(Bucket=bucket, Key=key)["Body"].read())
    assert intent["request"]["sequence_number"] == 3 and intent["request"]["force"] is True


def test_the_filesystem_backend_says_direct_uploads_are_unavailable(tmp_path: Path) -> None:
    service = ServiceProcess({"WORK_DIR": str(tmp_path), "INDEXING_ENABLED": "false"},
                             tmp_path / "fs.log").start()
    try:
        answer = requests.post(service.url + "/api/v1/delta/upload-url",
                               data={"workspace_path": "/work/x"}, timeout=30)
        assert answer.status_code == 501
        assert answer.json()["error"]["code"] == "DIRECT_UPLOAD_UNAVAILABLE"
    finally:
        assert service.stop() == 0
