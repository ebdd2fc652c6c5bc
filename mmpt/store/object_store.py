"""A pyarrow filesystem for a dataset URI that honours Lance's `storage_options` (endpoint, keys, region).

Lance reads `storage_options`; pyarrow's `FileSystem.from_uri` only reads the AWS_* environment, so files mmpt
writes next to a dataset (reports, staging removal) would miss a custom endpoint such as MinIO without this.
"""

from __future__ import annotations

from pyarrow import fs as pafs

_TRUE = {"1", "true", "yes", "on"}


def filesystem(uri: str, storage_options: dict[str, str] | None = None) -> tuple[pafs.FileSystem, str]:
    """(filesystem, path inside it) for `uri`: S3 built from `storage_options` when given, else pyarrow's own."""
    options = {k.lower(): v for k, v in (storage_options or {}).items()}
    if not options or not uri.startswith(("s3://", "s3a://")):
        return pafs.FileSystem.from_uri(uri)
    endpoint = options.get("endpoint") or options.get("aws_endpoint") or options.get("aws_endpoint_url")
    scheme = "https"
    if endpoint and "://" in endpoint:
        scheme, endpoint = endpoint.split("://", 1)
    if options.get("allow_http", options.get("aws_allow_http", "")).lower() in _TRUE and endpoint is None:
        scheme = "http"
    s3 = pafs.S3FileSystem(
        access_key=options.get("aws_access_key_id") or options.get("access_key_id"),
        secret_key=options.get("aws_secret_access_key") or options.get("secret_access_key"),
        session_token=options.get("aws_session_token") or options.get("session_token"),
        region=options.get("region") or options.get("aws_region"),
        endpoint_override=endpoint,
        scheme=scheme,
    )
    return s3, uri.split("://", 1)[1]
