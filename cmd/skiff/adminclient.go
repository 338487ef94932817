package main

import (
	"crypto/tls"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/spf13/pflag"

	"github.com/skiff-dev/skiff/internal/tlsreload"
)

// adminClientOptions are the flags of the commands that talk to a rollout
// server as its admin (`skiff fleet`, `skiff rollout`): where it is, the
// admin token, and the TLS settings of a server with its own CA or one
// that requires client certificates.
type adminClientOptions struct {
	server, tokenFile         string
	caFile, certFile, keyFile string
	client                    *http.Client // tests
}

func (o *adminClientOptions) addFlags(fs *pflag.FlagSet) {
	fs.StringVar(&o.server, "server", "", "rollout server URL, e.g. https://skiff.example.com")
	fs.StringVar(&o.tokenFile, "token-file", "", "file holding an admin token (its first line); also $SKIFF_ADMIN_TOKEN")
	fs.StringVar(&o.caFile, "ca-file", "", "PEM CA bundle the server's certificate must chain to (default: the system's roots)")
	fs.StringVar(&o.certFile, "client-cert", "", "PEM client certificate to present (a server started with --client-ca requires one); with --client-key")
	fs.StringVar(&o.keyFile, "client-key", "", "PEM key of --client-cert")
}

// connect checks the flags and returns the server's base URL, the admin
// token and a client whose requests end after timeout. need says what
// the token is for, in the error when there is none.
func (o *adminClientOptions) connect(need string, timeout time.Duration) (base, token string, c *http.Client, err error) {
	tokens, err := loadTokens(o.tokenFile, "SKIFF_ADMIN_TOKEN")
	if err != nil {
		return "", "", nil, err
	}
	if len(tokens) == 0 {
		return "", "", nil, usageError{"no token: give --token-file or $SKIFF_ADMIN_TOKEN (" + need + " needs an admin token)"}
	}
	u, err := url.Parse(strings.TrimSuffix(o.server, "/"))
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return "", "", nil, usageError{fmt.Sprintf("--server %q: want http(s)://HOST[:PORT]", o.server)}
	}
	if o.client != nil {
		return u.String(), tokens[0], o.client, nil
	}
	c, err = o.httpClient(timeout)
	return u.String(), tokens[0], c, err
}

// httpClient is a client with the --ca-file and --client-cert settings.
func (o *adminClientOptions) httpClient(timeout time.Duration) (*http.Client, error) {
	if (o.certFile == "") != (o.keyFile == "") {
		return nil, usageError{"--client-cert and --client-key go together"}
	}
	c := &http.Client{Timeout: timeout}
	if o.caFile == "" && o.certFile == "" {
		return c, nil
	}
	cfg := &tls.Config{MinVersion: tls.VersionTLS12}
	if o.caFile != "" {
		pool, err := tlsreload.LoadCertPool(o.caFile)
		if err != nil {
			return nil, fmt.Errorf("--ca-file: %w", err)
		}
		cfg.RootCAs = pool
	}
	if o.certFile != "" {
		pair, err := tlsreload.LoadKeyPair(o.certFile, o.keyFile)
		if err != nil {
			return nil, fmt.Errorf("--client-cert: %w", err)
		}
		cfg.Certificates = []tls.Certificate{*pair}
	}
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.TLSClientConfig = cfg
	c.Transport = t
	return c, nil
}
