// Package dockerengine connects to the Docker Engine the environment names
// (DOCKER_HOST, DOCKER_API_VERSION, DOCKER_CERT_PATH, DOCKER_TLS_VERIFY):
// one dialer for every part of skiff that talks to the Engine API, so they
// agree on where the engine is and say so the same way when it is not there.
package dockerengine
