package main

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/spf13/pflag"

	"github.com/skiff-dev/skiff/internal/tlsreload"
)

// serveTLSOptions are serve's HTTPS flags.
type serveTLSOptions struct {
	certFile, keyFile, clientCA string
	// deviceFromCert binds device IDs to client certificates.
	deviceFromCert bool
	// checkEvery bounds how often a handshake looks for changed files
	// (0: tlsreload's default; negative: only on SIGHUP; tests).
	checkEvery time.Duration
}

func (o *serveTLSOptions) addFlags(fs *pflag.FlagSet) {
	fs.StringVar(&o.certFile, "tls-cert", "", "serve HTTPS with this certificate file (PEM: the certificate, then any intermediates); with --tls-key; reloaded on SIGHUP and when the files change")
	fs.StringVar(&o.keyFile, "tls-key", "", "private key file of --tls-cert (PEM); refused when other users may read it (chmod 600)")
	fs.StringVar(&o.clientCA, "client-ca", "", "require client certificates of devices, issued by a CA of this PEM bundle (needs --tls-cert; reloaded with it)")
	fs.BoolVar(&o.deviceFromCert, "device-id-from-cert", false, "a check-in or report must name the device its client certificate names (subject common name): one device cannot speak for another (needs --client-ca)")
}

func (o *serveTLSOptions) enabled() bool { return o.certFile != "" }

// validate checks the flags go together.
func (o *serveTLSOptions) validate() error {
	switch {
	case o.certFile != "" && o.keyFile == "":
		return usageError{"--tls-cert without --tls-key: give both, the certificate and its private key"}
	case o.keyFile != "" && o.certFile == "":
		return usageError{"--tls-key without --tls-cert: give both, the certificate and its private key"}
	case o.clientCA != "" && o.certFile == "":
		return usageError{"--client-ca needs --tls-cert and --tls-key: client certificates are checked in the TLS handshake"}
	case o.deviceFromCert && o.clientCA == "":
		return usageError{"--device-id-from-cert needs --client-ca: device IDs are bound to verified client certificates"}
	}
	return nil
}

// reloader loads the certificate (and client CAs) to serve.
func (o *serveTLSOptions) reloader(log *slog.Logger) (*tlsreload.Reloader, error) {
	r, err := tlsreload.New(tlsreload.Config{
		CertFile: o.certFile, KeyFile: o.keyFile, ClientCAFile: o.clientCA,
		CheckEvery: o.checkEvery, Logger: log,
	})
	if err != nil {
		return nil, fmt.Errorf("https: %w", err)
	}
	return r, nil
}

// reloadOnHangup makes SIGHUP reload r, instead of ending skiff, until
// ctx ends or release is called.
func reloadOnHangup(ctx context.Context, r *tlsreload.Reloader) (release func()) {
	hup, releaseHUP := claimHangup()
	done := make(chan struct{})
	stopped := make(chan struct{})
	go func() {
		defer close(stopped)
		for {
			select {
			case <-hup:
				r.Reload("SIGHUP") // logs the outcome; a failure keeps the old certificate
			case <-ctx.Done():
				return
			case <-done:
				return
			}
		}
	}()
	return func() {
		releaseHUP()
		select {
		case <-done:
		default:
			close(done)
		}
		<-stopped
	}
}
