// Package tlstest makes certificates for tests of TLS on loopback: a CA
// (NewCA), server certificates for 127.0.0.1 and client certificates it
// issues with a chosen serial, all ECDSA P-256, and writes them as PEM
// files (the private key 0600).
package tlstest
