package agent

import (
	"crypto/tls"
	"fmt"
	"net/http"
	"path/filepath"

	"github.com/skiff-dev/skiff/internal/tlsreload"
)

// validateTLS checks the TLS fields of a server source: absolute paths,
// client_cert and client_key together, an https server.
func (s *SourceConfig) validateTLS(f, scheme string, bad func(field, format string, args ...any) error) error {
	for _, p := range []struct{ name, v string }{{"ca_file", s.CAFile}, {"client_cert", s.ClientCert}, {"client_key", s.ClientKey}} {
		if p.v != "" && !filepath.IsAbs(p.v) {
			return bad(f+".source."+p.name, "%q is not an absolute path", p.v)
		}
	}
	switch {
	case s.ClientCert != "" && s.ClientKey == "":
		return bad(f+".source.client_key", "missing (client_cert needs its private key)")
	case s.ClientKey != "" && s.ClientCert == "":
		return bad(f+".source.client_cert", "missing (client_key needs its certificate)")
	case s.hasTLS() && scheme != "https":
		return bad(f+".source.server", "%q: ca_file, client_cert and client_key need an https:// server", s.Server)
	}
	return nil
}

// hasTLS reports whether the source pins a CA or has a client certificate.
func (s SourceConfig) hasTLS() bool { return s.CAFile != "" || s.ClientCert != "" }

// tlsConfig is the TLS configuration for the source's server: the roots
// of ca_file only (else the system's), the client certificate. Errors
// name the field.
func (s SourceConfig) tlsConfig() (*tls.Config, error) {
	c := &tls.Config{MinVersion: tls.VersionTLS12}
	if s.CAFile != "" {
		pool, err := tlsreload.LoadCertPool(s.CAFile)
		if err != nil {
			return nil, fmt.Errorf("source.ca_file: %w", err)
		}
		c.RootCAs = pool
	}
	if s.ClientCert != "" {
		cert, err := tlsreload.LoadKeyPair(s.ClientCert, s.ClientKey)
		if err != nil {
			return nil, fmt.Errorf("source.client_cert, client_key: %w", err)
		}
		c.Certificates = []tls.Certificate{*cert}
	}
	return c, nil
}

// serverClients makes an HTTP client, with the config's network timeouts,
// for each server source with TLS settings (images with the same ones
// share it), by image name.
func serverClients(cfg *Config) (map[string]*http.Client, error) {
	byFiles := map[[3]string]*http.Client{}
	out := map[string]*http.Client{}
	for i, im := range cfg.Images {
		s := im.Source
		if !s.IsServer() || !s.hasTLS() {
			continue
		}
		k := [3]string{s.CAFile, s.ClientCert, s.ClientKey}
		if c := byFiles[k]; c != nil {
			out[im.Name] = c
			continue
		}
		tc, err := s.tlsConfig()
		if err != nil {
			return nil, fmt.Errorf("%w: images[%d] (%s).%w", ErrConfig, i, im.Name, err)
		}
		c := newHTTPClient(cfg.Network, tc)
		byFiles[k], out[im.Name] = c, c
	}
	return out, nil
}

// serverClient is the client for requests to im's server: its own with
// TLS settings, else the agent's.
func (a *Agent) serverClient(im *ImageConfig) *http.Client {
	if c := a.servers[im.Name]; c != nil {
		return c
	}
	return a.client
}
