"""Model weights: fetched once into a cache, verified, and held while a model serves them.

- `sources`: the reader for a URI's scheme: `source_http`, `source_s3` (lists and signs,
  then streams by the HTTP path), `source_hf`, `source_local` (pvc, file); `reader`
  what they share.
- `download`: streaming to a file with its sha256 computed on the way, resumed with
  HTTP Range after a transient error; local copies.
- `cache`: the cache directory: temporaries, complete-entry markers, LRU eviction that
  skips entries a model holds (shared flock), the size limit.
- `fetcher`: one fetch from start to `Cached` or `Failed`, with retries and backoff.
- `progress`: bytes and rate, merge-patched into the selection's `status.runtime.weights`.
- `cli`: `fovea-models fetch-weights` (the model pod's init container).
"""
