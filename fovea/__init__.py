"""fovea-models: a Kubernetes-native manager for a video annotation platform's ML models.

The top-level folders are the architecture: `domain/` (pure schemas and math),
`operator/` (kopf), `api/` (FastAPI), `model_pod/` (the model-server process),
`localcluster/` (a real control plane for development and tests).
"""
