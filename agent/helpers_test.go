package agent

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ed25519"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/skiff-dev/skiff/delta"
	"github.com/skiff-dev/skiff/delta/format"
	"github.com/skiff-dev/skiff/delta/sign"
	"github.com/skiff-dev/skiff/internal/example"
	"github.com/skiff-dev/skiff/layerfs"
)

// pair is the example image pair and deltas between them, made once per
// test binary.
type pair struct {
	old, new         v1.Image
	oldID, newID     string
	newManifest      string
	forward          []byte // old -> new, carrying the target manifest
	forwardV3        []byte // forward as manifest version 3: no declared scratch space
	backward         []byte // new -> old: a delta for another base
	unsigned         []byte // forward, unsigned
	forwardHeaderRaw *format.Header
	key              ed25519.PrivateKey // signs forward and backward; devices trust it
}

// testKey is a deterministic ed25519 key.
func testKey(seed byte) ed25519.PrivateKey {
	return ed25519.NewKeyFromSeed(bytes.Repeat([]byte{seed}, ed25519.SeedSize))
}

var (
	pairOnce sync.Once
	pairVal  *pair
	pairErr  error
)

func testPair(t *testing.T) *pair {
	t.Helper()
	pairOnce.Do(func() {
		p := &pair{}
		if p.old, p.new, pairErr = example.Images(); pairErr != nil {
			return
		}
		ctx := context.Background()
		// Fast encoders only: the agent does not care how small the
		// delta is.
		opts := delta.DefaultOptions()
		opts.Bsdiff, opts.BsdiffX86, opts.BrotliQuality, opts.Level = false, false, 0, 1
		p.key = testKey(1)
		opts.Signers = []crypto.Signer{p.key}
		var fw, bw, uw bytes.Buffer
		if _, pairErr = delta.Diff(ctx, p.new, p.old, &bw, opts); pairErr != nil {
			return
		}
		opts.Manifest = true
		if _, pairErr = delta.Diff(ctx, p.old, p.new, &fw, opts); pairErr != nil {
			return
		}
		v3 := opts
		v3.Lean = false
		var fw3 bytes.Buffer
		if _, pairErr = delta.Diff(ctx, p.old, p.new, &fw3, v3); pairErr != nil {
			return
		}
		p.forwardV3 = fw3.Bytes()
		opts.Signers = nil
		if _, pairErr = delta.Diff(ctx, p.old, p.new, &uw, opts); pairErr != nil {
			return
		}
		p.forward, p.backward, p.unsigned = fw.Bytes(), bw.Bytes(), uw.Bytes()
		if p.forwardHeaderRaw, pairErr = format.ReadHeader(bytes.NewReader(p.forward)); pairErr != nil {
			return
		}
		o, _ := p.old.ConfigName()
		n, _ := p.new.ConfigName()
		md, _ := p.new.Digest()
		p.oldID, p.newID, p.newManifest = o.String(), n.String(), md.String()
		pairVal = p
	})
	if pairErr != nil {
		t.Fatal(pairErr)
	}
	return pairVal
}

// device is a test device: an OCI layout engine holding the old image as
// web:stable, a state dir and a config.
type device struct {
	dir, images, stateDir string
	hookOut               string
	trusted               string // public key file of the pair's signing key
}

func newDevice(t *testing.T, p *pair) *device {
	t.Helper()
	d := &device{dir: t.TempDir()}
	d.images = filepath.Join(d.dir, "images")
	d.stateDir = filepath.Join(d.dir, "state")
	d.hookOut = filepath.Join(d.dir, "hook.out")
	d.trusted = filepath.Join(d.dir, "trusted.pub")
	pub, err := sign.MarshalPublicKey(p.key.Public().(ed25519.PublicKey))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(d.trusted, pub, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := layerfs.Write(context.Background(), "oci:"+d.images+":web:stable", p.old); err != nil {
		t.Fatal(err)
	}
	return d
}

// config is a YAML config for the device with the given source block
// (indented for images[0].source) and extra image fields; its hook writes
// the SKIFF_ variables to d.hookOut.
func (d *device) config(t *testing.T, source string, extra string) *Config {
	t.Helper()
	return d.configHook(t, `env | grep -E "^SKIFF_(IMAGE|REF|CONFIG_DIGEST|MANIFEST_DIGEST|PREVIOUS_DIGEST)=" | sort > `+d.hookOut, source, extra)
}

// configHook is config with another hook command.
func (d *device) configHook(t *testing.T, hook, source, extra string) *Config {
	t.Helper()
	y := d.yaml(hook, source, extra)
	c, err := ParseConfig([]byte(y))
	if err != nil {
		t.Fatalf("%v\n%s", err, y)
	}
	return c
}

// yaml is the device's config file with the given hook, source block and
// extra image fields.
func (d *device) yaml(hook, source, extra string) string {
	return "state_dir: " + d.stateDir + "\n" +
		"device: test-device\n" +
		"trusted_keys: ['" + d.trusted + "']\n" +
		"images:\n" +
		"  - name: web\n" +
		"    engine: oci:" + d.images + "\n" +
		"    ref: web:stable\n" +
		"    hook: '" + hook + "'\n" +
		"    source:\n" + indent(source, "      ") + extra
}

func indent(s, pre string) string {
	var b strings.Builder
	for _, l := range strings.Split(strings.TrimSpace(s), "\n") {
		b.WriteString(pre + strings.TrimSpace(l) + "\n")
	}
	return b.String()
}

func quietLogger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

func newAgent(t *testing.T, c *Config, opts ...Option) *Agent {
	t.Helper()
	a, err := New(c, append([]Option{WithLogger(quietLogger()), WithSeed(1)}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

// running is the ID of what the device's engine holds under web:stable.
func (d *device) running(t *testing.T) ImageInfo {
	t.Helper()
	info, err := (&OCIEngine{Dir: d.images}).Inspect(context.Background(), "web:stable")
	if err != nil {
		t.Fatal(err)
	}
	return info
}

// hookEnv reads what the hook recorded.
func (d *device) hookEnv(t *testing.T) map[string]string {
	t.Helper()
	b, err := os.ReadFile(d.hookOut)
	if err != nil {
		t.Fatalf("hook did not run: %v", err)
	}
	env := map[string]string{}
	for _, l := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		k, v, _ := strings.Cut(l, "=")
		env[k] = v
	}
	return env
}

func writeFile(t *testing.T, dir, name string, b []byte) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, b, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}
