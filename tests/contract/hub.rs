//! The hub's API (`GET /api/v1/openapi.json` on its HTTPS listener) against a live hub.
