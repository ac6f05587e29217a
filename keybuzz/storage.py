"""Where attachment bytes live: Django's `STORAGES["default"]`, built from the environment.

Empty `ATTACHMENTS_S3_BUCKET` (the default): files under `MEDIA_ROOT`, on this host's disk, which only
suits a single host (or a shared volume). Set, it is S3-compatible object storage through
django-storages (AWS S3, MinIO, Ceph RGW, Scaleway, OVH…), which every web, poller and sender host
shares. Either way files are never public: no ACL is set on objects (the bucket's private default
applies), no URL to them is ever handed out, and only the tickets API streams a file to a member of
its tenant.

This module is imported by the settings: it must not import anything that needs Django configured.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

S3_BACKEND = "storages.backends.s3.S3Storage"
SECRET_STORE_S3_BACKEND = "keybuzz.storage_backends.SecretStoreS3Storage"
LOCAL_BACKEND = "django.core.files.storage.FileSystemStorage"


@dataclass(frozen=True)
class S3Options:
    bucket: str
    endpoint_url: str = ""  # empty: AWS, from the region
    region: str = ""
    prefix: str = ""  # a folder in the bucket, e.g. "keybuzz/production"
    access_key_id: str = ""  # both empty: boto3's own chain (an instance role, AWS_* variables…)
    secret_access_key: str = ""
    credentials_path: str = ""  # or the key pair from the secret store, at this path
    server_side_encryption: str = ""  # "AES256", "aws:kms" or empty (the bucket's default)
    kms_key_id: str = ""
    verify: bool | str = True  # False, or a CA bundle's path for a private endpoint
    timeout_seconds: float = 5.0
    max_attempts: int = 2


def s3_storage_options(options: S3Options) -> dict[str, Any]:
    """The OPTIONS of django-storages' S3Storage for `options`."""
    from botocore.config import Config  # only when S3 is configured: a local setup never loads boto

    object_parameters: dict[str, str] = {}
    if options.server_side_encryption:
        object_parameters["ServerSideEncryption"] = options.server_side_encryption
        if options.kms_key_id:
            object_parameters["SSEKMSKeyId"] = options.kms_key_id
    result: dict[str, Any] = {
        "bucket_name": options.bucket,
        "location": options.prefix.strip("/"),
        # Private: no ACL sent (the bucket's owner-only default, and buckets with ACLs disabled
        # accept it), and never a public URL: `url()` could only sign one, and nothing calls it.
        "default_acl": None,
        "querystring_auth": True,
        "querystring_expire": 300,
        # Content-addressed names (tickets.attachments): a name already taken gets a suffix rather
        # than replacing an object another row points to.
        "file_overwrite": False,
        "object_parameters": object_parameters,
        "verify": options.verify,
        # A download is copied to a temporary file before it is streamed (tickets.attachments):
        # in memory up to 2 MB, on disk (FILE_UPLOAD_TEMP_DIR, never MEDIA_ROOT) above.
        "max_memory_size": 2 * 1024 * 1024,
        # An unreachable store answers within seconds (the API's 503, the poller's retry), rather
        # than after botocore's default 60-second timeouts: a download's two calls (lookup, body)
        # stay well inside gunicorn's 60-second request timeout.
        "client_config": Config(
            connect_timeout=options.timeout_seconds,
            read_timeout=options.timeout_seconds,
            retries={"max_attempts": options.max_attempts, "mode": "standard"},
            signature_version="s3v4",
            s3={"addressing_style": "path" if options.endpoint_url else "auto"},
        ),
    }
    if options.endpoint_url:
        result["endpoint_url"] = options.endpoint_url
    if options.region:
        result["region_name"] = options.region
    if options.credentials_path:
        # Empty here, so that no AWS_* variable is picked up instead: read from the store.
        result.update(credentials_path=options.credentials_path, access_key="", secret_key="")
    elif options.access_key_id or options.secret_access_key:
        result["access_key"] = options.access_key_id
        result["secret_key"] = options.secret_access_key
    return result


def storages_setting(*, s3: S3Options | None) -> dict[str, Any]:
    """Django's STORAGES: attachments in S3 when `s3` is given, else under MEDIA_ROOT (read when
    the storage is first used, so a test's MEDIA_ROOT applies)."""
    default: dict[str, Any] = {"BACKEND": LOCAL_BACKEND}
    if s3 is not None:
        backend = SECRET_STORE_S3_BACKEND if s3.credentials_path else S3_BACKEND
        default = {"BACKEND": backend, "OPTIONS": s3_storage_options(s3)}
    return {
        "default": default,
        "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
    }
