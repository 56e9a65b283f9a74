"""What a hostile tester sent to the open events endpoint, over real HTTP, on moto and on
a real Ceph RGW: only a key an upload-url call announced (its intent, its token) makes
the service write, delete or change anything.
"""

from __future__ import annotations

import json
import secrets
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests

from tests.e2e.test_direct_upload import PREFIX, bundle_state, event, incoming, post_event, presign, put
from tests.support.bundles import BundleBuilder
from tests.support.moto_server import create_bucket, s3_client
from tests.support.service import ServiceProcess


@dataclass
class Stack:
    service: ServiceProcess
    bucket: str
    s3: Any

    def objects(self) -> set[str]:
        pages = self.s3.get_paginator("list_objects_v2").paginate(Bucket=self.bucket)
        return {o["Key"] for page in pages for o in page.get("Contents", [])}


@pytest.fixture(scope="module", params=["moto", "rgw"])
def stack(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    bucket = f"hostile-{uuid.uuid4().hex[:10]}"
    if request.param == "rgw":
        rgw = request.getfixturevalue("rgw_endpoint")
        rgw.create_bucket(bucket)
        endpoint, s3 = rgw.url, rgw.client()
    else:
        endpoint = request.getfixturevalue("moto_endpoint")
        create_bucket(endpoint, bucket)
        s3 = s3_client(endpoint)
    env = {"STORAGE_URL": f"s3://{bucket}/{PREFIX}", "S3_ENDPOINT_URL": endpoint,
           "SCRATCH_DIR": str(tmp_path_factory.mktemp("scratch")), "INDEXING_ENABLED": "false"}
    service = ServiceProcess(env, tmp_path_factory.mktemp("logs") / "service.log").start()
    yield Stack(service, bucket, s3)
    assert service.stop() == 0


def rgw_event(bucket: str, key: str) -> dict[str, Any]:
    """RGW's push JSON naming `key` verbatim (control characters included)."""
    body = event("rgw-put.json", bucket, "placeholder")
    body["Records"][0]["s3"]["object"]["key"] = key
    return body


def outcomes(answer: requests.Response) -> list[str]:
    assert answer.status_code == 200, answer.text
    return [o["outcome"] for o in answer.json()["outcomes"]]


def test_an_unannounced_key_in_a_victims_workspace_changes_nothing(stack: Stack) -> None:
    victim = f"/work/victim-{uuid.uuid4().hex[:6]}"
    issued = presign(stack.service, victim)
    put(issued["upload_url"], BundleBuilder(bundle_id=issued["bundle_id"]).created("a.py", b"1\n").build())
    ws, bundle_id, stranger = issued["workspace_key"], issued["bundle_id"], str(uuid.uuid4())
    before = stack.objects()
    forged = [
        f"{PREFIX}/incoming/{ws}/{bundle_id}.tar.gz",  # the old layout: workspace key and id suffice
        f"{PREFIX}/incoming/{ws}/{stranger}.tar.gz",
        f"{PREFIX}/incoming/{ws}/{bundle_id}/{secrets.token_hex(16)}.tar.gz",  # a guessed token
        f"{PREFIX}/incoming/{ws}/{stranger}/{secrets.token_hex(16)}.tar.gz",
        f"{PREFIX}/incoming/{ws}/{bundle_id}/{incoming(issued).rsplit('/', 1)[1].upper()}",
    ]
    for key in forged:
        assert outcomes(post_event(stack.service, event("rgw-put.json", stack.bucket, key))) == ["ignored"]
    assert stack.objects() == before, "no record, no deletion"
    assert bundle_state(stack.service, victim, bundle_id)["state"] == "uploaded"
    assert requests.get(f"{stack.service.url}/api/v1/delta/bundles/{stranger}",
                        params={"workspace_path": victim}, timeout=30).status_code == 404
    assert outcomes(post_event(stack.service, event("rgw-put.json", stack.bucket, incoming(issued)))) == [
        "processed"]


@pytest.mark.parametrize("tail", [
    "../{id}.tar.gz", "../refused/{id}.tar.gz",
    "{ws}/../../workspaces/{ws}/refused/{id}.tar.gz", "{ws}/{id}/../x.tar.gz",
    "{ws}//{id}.tar.gz", "/{ws}/{id}.tar.gz", "{ws}/{id}/{token}/extra.tar.gz", "{ws}/./{id}.tar.gz",
    "..%2F{ws}/{id}.tar.gz", "{ws}\n/{id}/{token}.tar.gz", "{ws}/{id}\n/{token}.tar.gz",
    "{ws}/{id}/{token}.tar.gz\n", "{ws}/.../{token}.tar.gz", "x-0123456789abcdeg/{id}/{token}.tar.gz",
], ids=lambda tail: tail.replace("/", "|"))
def test_malformed_incoming_keys_are_ignored_and_write_nothing(stack: Stack, tail: str) -> None:
    issued = presign(stack.service, f"/work/dots-{uuid.uuid4().hex[:6]}")
    token = incoming(issued).rsplit("/", 1)[1].removesuffix(".tar.gz")
    key = PREFIX + "/incoming/" + tail.format(ws=issued["workspace_key"], id=issued["bundle_id"], token=token)
    before = stack.objects()
    assert outcomes(post_event(stack.service, rgw_event(stack.bucket, key))) == ["ignored"]
    assert stack.objects() == before


def test_more_than_100_records_is_413_and_nothing_is_processed(stack: Stack) -> None:
    workspace = f"/work/many-{uuid.uuid4().hex[:6]}"
    issued = presign(stack.service, workspace)
    put(issued["upload_url"], BundleBuilder(bundle_id=issued["bundle_id"]).created("a", b"1").build())
    record = event("rgw-put.json", stack.bucket, incoming(issued))["Records"][0]
    answer = post_event(stack.service, {"Records": [record] * 101})
    assert answer.status_code == 413 and answer.json()["error"]["code"] == "TOO_MANY_RECORDS"
    assert bundle_state(stack.service, workspace, issued["bundle_id"])["state"] == "uploaded"
    answer = post_event(stack.service, {"Records": [record] * 100})
    assert outcomes(answer) == ["processed"] + ["ignored"] * 99


def test_intents_go_once_their_bundle_is_committed_or_refused(stack: Stack) -> None:
    workspace = f"/work/gone-{uuid.uuid4().hex[:6]}"
    good, bad = presign(stack.service, workspace), presign(stack.service, workspace)
    put(good["upload_url"], BundleBuilder(bundle_id=good["bundle_id"]).created("a", b"1").build())
    put(bad["upload_url"], b"not a bundle")
    intents = f"{PREFIX}/workspaces/{good['workspace_key']}/intents/"
    assert {k for k in stack.objects() if k.startswith(intents)} == {
        f"{intents}{good['bundle_id']}.json", f"{intents}{bad['bundle_id']}.json"}
    body = {"Records": [event("rgw-put.json", stack.bucket, incoming(i))["Records"][0] for i in (good, bad)]}
    assert outcomes(post_event(stack.service, body)) == ["processed", "refused"]
    assert not {k for k in stack.objects() if k.startswith(intents) or "/incoming/" in k}
    assert outcomes(post_event(stack.service, body)) == ["ignored", "ignored"]
    assert bundle_state(stack.service, workspace, good["bundle_id"])["state"] == "committed"
    assert bundle_state(stack.service, workspace, bad["bundle_id"])["state"] == "refused"
    assert stack.service.status(workspace).json()["last_sequence"] == 1


def test_an_expired_intent_is_not_acted_on(stack: Stack) -> None:
    workspace = f"/work/expired-{uuid.uuid4().hex[:6]}"
    issued = presign(stack.service, workspace)
    put(issued["upload_url"], BundleBuilder(bundle_id=issued["bundle_id"]).created("a", b"1").build())
    key = f"{PREFIX}/workspaces/{issued['workspace_key']}/intents/{issued['bundle_id']}.json"
    intent = json.loads(stack.s3.get_object(Bucket=stack.bucket, Key=key)["Body"].read())
    expired = json.dumps({**intent, "expires_at": time.time() - 1})
    stack.s3.put_object(Bucket=stack.bucket, Key=key, Body=expired)
    before = stack.objects()
    assert outcomes(post_event(stack.service, event("rgw-put.json", stack.bucket, incoming(issued)))) == [
        "ignored"]
    assert stack.objects() == before
    assert bundle_state(stack.service, workspace, issued["bundle_id"])["state"] == "expired"


def test_a_repeated_upload_url_call_names_the_same_key(stack: Stack) -> None:
    workspace, bundle_id = f"/work/again-{uuid.uuid4().hex[:6]}", str(uuid.uuid4())
    first, second = (presign(stack.service, workspace, bundle_id=bundle_id) for _ in range(2))
    assert incoming(first) == incoming(second)


NESTED = b"[" * 30_000 + b"]" * 30_000  # under every body cap, far past the recursion limit


@pytest.mark.parametrize(("path", "headers"), [
    ("/api/v1/delta/events", {"Content-Type": "application/json"}),
    ("/api/v1/delta/events", {"Content-Type": "application/cloudevents+json"}),
    ("/api/v1/delta/upload-url", {"Content-Type": "application/json"}),
], ids=["events", "structured-cloudevent", "upload-url"])
def test_deeply_nested_json_is_a_400_without_a_traceback(
    stack: Stack, path: str, headers: dict[str, str]
) -> None:
    for body in (NESTED, b'{"Records": ' + b"[" * 40 + b"]" * 40 + b"}", b'{"a":' * 50 + b"1" + b"}" * 50):
        answer = requests.post(stack.service.url + path, data=body, headers=headers, timeout=30)
        assert answer.status_code == 400, answer.text
        assert answer.json()["error"]["code"] == "INVALID_JSON"
    assert "Traceback" not in stack.service.log_path.read_text()


def test_unknown_event_types_are_never_echoed(stack: Stack) -> None:
    loud = "com.example." + "A" * 20_000
    answer = requests.post(stack.service.url + "/api/v1/delta/events",
                           data=json.dumps({"specversion": "1.0", "id": "1", "source": "s", "type": loud}),
                           headers={"Content-Type": "application/cloudevents+json"}, timeout=30)
    assert answer.status_code == 400 and answer.json()["error"]["code"] == "UNKNOWN_EVENT"
    assert "AAAA" not in answer.text and len(answer.content) < 300


def test_an_oversized_form_field_has_its_own_413(stack: Stack) -> None:
    url = stack.service.url + "/api/v1/delta/upload-url"
    multipart = {"workspace_path": (None, "/work/x"), "source_path": (None, "s" * 600_000)}
    answer = requests.post(url, files=multipart, timeout=30)
    assert answer.status_code == 413, answer.text
    assert answer.json()["error"]["code"] == "REQUEST_TOO_LARGE"  # over JSON_MAX_BODY_KB as a whole
    assert "MAX_BUNDLE_SIZE_MB" not in answer.text
    answer = stack.service.upload(b"x", source_path="s" * 600_000)
    assert answer.status_code == 413 and answer.json()["error"]["code"] == "FORM_FIELD_TOO_LARGE"


def test_events_are_rate_limited_per_source_address(moto_endpoint: str, tmp_path: Path) -> None:
    bucket = f"limited-{uuid.uuid4().hex[:10]}"
    create_bucket(moto_endpoint, bucket)
    env = {"STORAGE_URL": f"s3://{bucket}/{PREFIX}", "S3_ENDPOINT_URL": moto_endpoint,
           "SCRATCH_DIR": str(tmp_path), "INDEXING_ENABLED": "false", "EVENT_RATE_LIMIT_PER_MIN": "5"}
    service = ServiceProcess(env, tmp_path / "service.log").start()
    try:
        record = rgw_event(bucket, f"{PREFIX}/incoming/x-0123456789abcdef/b/c.tar.gz")["Records"][0]
        assert outcomes(post_event(service, {"Records": [record] * 3})) == ["ignored"] * 3
        assert outcomes(post_event(service, {"Records": [record] * 2})) == ["ignored"] * 2
        answer = post_event(service, {"Records": [record]})
        assert answer.status_code == 429 and answer.json()["error"]["code"] == "RATE_LIMITED"
        assert int(answer.headers["Retry-After"]) >= 1
        assert service.status("/work/x").status_code == 200, "only events are limited"
    finally:
        assert service.stop() == 0
