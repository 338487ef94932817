// Package tlsreload loads the PEM files of TLS and keeps a server's
// certificate current.
//
// LoadKeyPair and LoadCertPool read a certificate and its private key, and
// a bundle of CA certificates, with errors that name the file and what is
// wrong with it (missing, not PEM, no certificate in it, a key that does
// not match the certificate, a key file other users may read). skiff serve
// and the agent both use them.
//
// A Reloader holds the certificate skiff serve presents (and the client
// CAs it verifies devices against) and replaces them on Reload (SIGHUP)
// and when the files' size or modification time change, checked during a
// handshake at most once per CheckEvery. A reload that fails keeps what
// is served and logs why; the server never runs without a certificate.
package tlsreload
