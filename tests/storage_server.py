"""A real S3-compatible server on 127.0.0.1 (moto's, over HTTP) for the attachment-storage tests.

The code under test talks to it through django-storages and boto3 exactly as to AWS or MinIO; the
tests look at the bucket through their own boto3 client, never through the code under test.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from botocore.config import Config

from keybuzz.storage import S3Options, storages_setting
from tests.net import HOST, free_port

REGION = "us-east-1"
ACCESS_KEY_ID = "AKIDKEYBUZZTESTS0000"
SECRET_ACCESS_KEY = "keybuzz-test-secret-not-a-real-key-00000"


class S3Server:
    def __init__(self) -> None:
        self.port = free_port()
        self.endpoint_url = f"http://{HOST}:{self.port}"
        self.bucket = f"keybuzz-{uuid.uuid4().hex[:12]}"
        self._server: Any = None
        self.client: Any = boto3.client(
            "s3",
            endpoint_url=self.endpoint_url,
            region_name=REGION,
            aws_access_key_id=ACCESS_KEY_ID,
            aws_secret_access_key=SECRET_ACCESS_KEY,
            config=Config(retries={"max_attempts": 1}, connect_timeout=2, read_timeout=5),
        )

    def start(self) -> None:
        from moto.server import ThreadedMotoServer  # half a second to import: only where a test needs it

        # moto keeps its buckets in this process: a restarted server on the same port has them back.
        self._server = ThreadedMotoServer(ip_address=HOST, port=self.port, verbose=False)
        self._server.start()

    def stop(self) -> None:
        if self._server is not None:
            self._server.stop()
            self._server = None

    def options(self, **overrides: Any) -> S3Options:
        values: dict[str, Any] = {
            "bucket": self.bucket,
            "endpoint_url": self.endpoint_url,
            "region": REGION,
            "access_key_id": ACCESS_KEY_ID,
            "secret_access_key": SECRET_ACCESS_KEY,
            "timeout_seconds": 2.0,
            "max_attempts": 1,
        }
        values.update(overrides)
        return S3Options(**values)

    def keys(self) -> list[str]:
        """Every object's key in the bucket, listed by the tests' own client."""
        pages = self.client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket)
        return sorted(item["Key"] for page in pages for item in page.get("Contents", []))

    def read(self, key: str) -> bytes:
        return self.client.get_object(Bucket=self.bucket, Key=key)["Body"].read()


@pytest.fixture
def s3_server(monkeypatch: pytest.MonkeyPatch) -> Iterator[S3Server]:
    """The server, with an empty private bucket; boto3 never looks for credentials or a region
    anywhere else (no instance metadata service, no ~/.aws)."""
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.setenv("AWS_CONFIG_FILE", "/dev/null")
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", "/dev/null")
    for name in ("AWS_PROFILE", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    server = S3Server()
    server.start()
    server.client.create_bucket(Bucket=server.bucket)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def s3_storage(settings: Any, s3_server: S3Server) -> S3Server:
    """Attachments in the server's bucket, configured as keybuzz.settings does from the environment."""
    settings.STORAGES = storages_setting(s3=s3_server.options(prefix="kb-test"))
    return s3_server
