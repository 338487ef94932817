// Package api holds the JSON types of the skiff rollout server's HTTP API
// (package transport/server) and of its clients (package agent). It has no
// behaviour: only the wire types and the route paths.
//
// All bodies are JSON. Every /v1 request carries "Authorization: Bearer TOKEN".
// Device tokens may call POST /v1/check and GET /v1/deltas/{digest}; the admin
// token may call every route. A missing or unknown token gets 401, a device
// token on an admin route 403.
//
//	POST /v1/check                   CheckRequest  -> CheckResponse      (device)
//	GET  /v1/deltas/{digest}         the delta file, Range + ETag        (device)
//	PUT  /v1/targets/{channel}/{image} PublishRequest -> Target          (admin)
//	POST /v1/notifications           distribution notification envelope (admin)
//	GET  /healthz, GET /metrics      no auth
//
// Errors are answered with a non-2xx status and an Error body.
package api
