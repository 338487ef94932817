package server

import (
	"fmt"
	"net/http"
)

// certAllows checks, with Config.DeviceIDFromCert, that a check-in or
// report names the device its TLS client certificate does (the
// certificate's subject common name): a device token then speaks for one
// device only, and one device cannot report for another.
func (s *Server) certAllows(r *http.Request, device string) error {
	if !s.cfg.DeviceIDFromCert {
		return nil
	}
	if r.TLS == nil || len(r.TLS.PeerCertificates) == 0 {
		return fmt.Errorf("a client certificate is required: this server binds device IDs to certificates")
	}
	cn := r.TLS.PeerCertificates[0].Subject.CommonName
	if cn == "" || cn != device {
		return fmt.Errorf("device %q does not match its client certificate (common name %q)", shorten(device, 64), shorten(cn, 64))
	}
	return nil
}
