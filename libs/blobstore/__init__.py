from libs.blobstore.memory import MemoryBlobStore
from libs.blobstore.s3 import S3BlobStore
from libs.blobstore.store import (
    BlobNotFound,
    BlobStore,
    BlobStoreRefused,
    BlobStoreUnavailable,
    ObjectInfo,
    StoredObject,
)

__all__ = [
    "BlobNotFound",
    "BlobStore",
    "BlobStoreRefused",
    "BlobStoreUnavailable",
    "MemoryBlobStore",
    "ObjectInfo",
    "S3BlobStore",
    "StoredObject",
]
