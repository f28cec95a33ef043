"""Model stores: where trained models, their fingerprints and metrics are kept.

::

    open_store(url)                     picks a Backend by URL scheme (registry.py)
    └── ModelStore                      manifest-driven publish / read / download
        └── Backend (Protocol)          get/put bytes and files, exists, size, delete,
            │                           get_versioned + put_if_version (compare-and-swap),
            │                           optional get_if_changed (conditional manifest reads)
            ├── LocalBackend            folder or file://   (local.py, atomic writes, flock)
            ├── HttpBackend             http(s)://          (http.py, requests, If-Match)
            ├── S3Backend               s3://bucket/prefix  (s3.py, boto3, conditional writes)
            ├── GitHubReleasesBackend   github://owner/repo[/tag]  (github.py, release assets)
            └── GitLabPackagesBackend   gitlab://host/project/package  (gitlab.py, generic packages)

The store layout is in :mod:`pipeline.stores.layout`; the manifest is written
last, so readers only ever see complete models, and every manifest change is a
compare-and-swap, so concurrent publishers never lose one (model_store.py). The
latest model's fingerprint, metadata and headline metrics sit inline in its manifest
entry, so a skip decision reads the manifest and checks the archive, nothing else.
"""

from pipeline.stores.backend import Backend
from pipeline.stores.model_store import ModelStore, StoredModel
from pipeline.stores.registry import open_store

__all__ = ["Backend", "ModelStore", "StoredModel", "open_store"]
