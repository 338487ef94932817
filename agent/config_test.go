package agent

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

const fullConfig = `
state_dir: /var/lib/skiff
device: edge-042
platform: linux/arm64/v8
mirrors:
  docker.io: [mirror.gcr.io, harbor.local/dockerhub]
containerd:
  namespace: k8s.io
  unpack: false
images:
  - name: web
    engine: docker
    ref: web:stable
    source:
      server: https://updates.example.com/
      token_file: /etc/skiff/token
      channel: stable
    policy: {interval: 6h, jitter: 30m, backoff_max: 1h}
    hook: systemctl restart web
    keep: 2
  - name: cam
    engine: oci:/var/lib/images
    ref: cam:stable
    source:
      registry: docker://registry.example.com:5000/cam
      tag: stable
      deltas: docker://registry.example.com:5000/cam-deltas
    allow_full_pull: true
`

func TestParseConfig(t *testing.T) {
	c, err := ParseConfig([]byte(fullConfig))
	if err != nil {
		t.Fatal(err)
	}
	web, cam := c.Images[0], c.Images[1]
	got := []any{c.WorkDir, c.Containerd.Namespace, *c.Containerd.Unpack, web.Source.Server, *web.Keep,
		web.Policy.Interval.D(), web.Policy.Jitter.D(), web.Policy.BackoffMin.D(), web.Policy.BackoffMax.D(),
		*cam.Keep, cam.Policy.Interval.D(), cam.Policy.Jitter.D(), cam.Policy.BackoffMax.D(), cam.AllowFullPull}
	want := []any{"/var/lib/skiff/work", "k8s.io", false, "https://updates.example.com", 2,
		6 * time.Hour, 30 * time.Minute, time.Minute, time.Hour,
		1, 24 * time.Hour, 144 * time.Minute, 24 * time.Hour, true}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("parsed config (-want +got):\n%s", diff)
	}
	if kind, dir := EngineKind(cam.Engine); kind != EngineOCI || dir != "/var/lib/images" {
		t.Errorf("engine %q -> %q %q", cam.Engine, kind, dir)
	}
}

func TestConfigErrors(t *testing.T) {
	base := func(image string) string {
		return "state_dir: /s\nimages:\n" + image
	}
	server := "    source: {server: http://s, token: t, channel: c}\n"
	img := "  - name: web\n    engine: docker\n    ref: web:1\n"
	cases := []struct {
		name, yaml, want string
	}{
		{"no state_dir", "images: []\n", "state_dir: missing"},
		{"relative state_dir", "state_dir: var/skiff\n", `state_dir: "var/skiff" is not an absolute path`},
		{"typo", "state_dir: /s\nstate_dri: /x\n", `state_dri: unknown field (line 2); did you mean "state_dir"?`},
		{"typo in an image", base(img + server + "    policy: {intervall: 1h}\n"), `images[0] (web).policy.intervall: unknown field (line 7); did you mean "interval"?`},
		{"typo in a source", base(img + "    source: {sever: http://s}\n"), `images[0] (web).source.sever: unknown field`},
		{"unknown, nothing near", "state_dir: /s\nnetwork: {speed: 9}\n", "network.speed: unknown field (line 2)"},
		{"no images", "state_dir: /s\n", "images: no images configured"},
		{"containers on oci", base("  - name: web\n    engine: oci:/o\n    ref: web\n" + server + "    health: {containers: true}\n"), "images[0] (web).health.containers: the oci:/o engine runs no containers"},
		{"no name", base("  - engine: docker\n    ref: a:1\n" + server), "images[0].name: missing"},
		{"bad name", base("  - name: Web App\n    engine: docker\n    ref: a:1\n" + server), `images[0] (Web App).name: "Web App"`},
		{"duplicate", base(img + server + img + server), `images[1] (web).name: "web" is used twice`},
		{"no engine", base("  - name: web\n    ref: a:1\n" + server), "images[0] (web).engine: missing"},
		{"bad engine", base("  - name: web\n    engine: podman\n    ref: a:1\n" + server), `engine: "podman": want docker, containerd or oci:DIR`},
		{"relative oci", base("  - name: web\n    engine: oci:images\n    ref: a:1\n" + server), `engine: "oci:images": want oci:DIR with an absolute DIR`},
		{"no ref", base("  - name: web\n    engine: docker\n" + server), "images[0] (web).ref: missing"},
		{"untagged ref", base("  - name: web\n    engine: containerd\n    ref: web\n" + server), `ref: "web": want NAME:TAG`},
		{"no source", base(img), "images[0] (web).source: missing"},
		{"both sources", base(img + "    source: {server: http://s, registry: docker://r/x}\n"), "source: set either server or registry"},
		{"bad server", base(img + "    source: {server: ftp://s, token: t, channel: c}\n"), `source.server: "ftp://s": want an http(s):// URL`},
		{"no token", base(img + "    source: {server: http://s, channel: c}\n"), "source.token: missing"},
		{"two tokens", base(img + "    source: {server: http://s, token: t, token_file: /t, channel: c}\n"), "set either token or token_file"},
		{"no channel", base(img + "    source: {server: http://s, token: t}\n"), "source.channel: missing"},
		{"registry scheme", base(img + "    source: {registry: r.io/x, tag: s}\n"), `source.registry: "r.io/x": want docker://HOST/REPO`},
		{"registry with tag", base(img + "    source: {registry: docker://r.io/x:1, tag: s}\n"), "without a tag"},
		{"no tag", base(img + "    source: {registry: docker://r.io/x}\n"), "source.tag: missing"},
		{"bad deltas", base(img + "    source: {registry: docker://r.io/x, tag: s, deltas: r.io/d}\n"), "source.deltas"},
		{"channel on registry", base(img + "    source: {registry: docker://r.io/x, tag: s, channel: c}\n"), "belong to a server source"},
		{"ca_file on registry", base(img + "    source: {registry: docker://r.io/x, tag: s, ca_file: /ca.pem}\n"), "ca_file, client_cert and client_key belong to a server source"},
		{"ca_file over http", base(img + "    source: {server: http://s, token: t, channel: c, ca_file: /ca.pem}\n"), `source.server: "http://s": ca_file, client_cert and client_key need an https:// server`},
		{"relative ca_file", base(img + "    source: {server: https://s, token: t, channel: c, ca_file: ca.pem}\n"), `source.ca_file: "ca.pem" is not an absolute path`},
		{"relative client_key", base(img + "    source: {server: https://s, token: t, channel: c, client_cert: /c.pem, client_key: c.key}\n"), `source.client_key: "c.key" is not an absolute path`},
		{"client_cert without key", base(img + "    source: {server: https://s, token: t, channel: c, client_cert: /c.pem}\n"), "source.client_key: missing (client_cert needs its private key)"},
		{"client_key without cert", base(img + "    source: {server: https://s, token: t, channel: c, client_key: /c.key}\n"), "source.client_cert: missing (client_key needs its certificate)"},
		{"bad duration", base(img + server + "    policy: {interval: 2x}\n"), `"2x" is not a duration`},
		{"negative", base(img + server + "    policy: {jitter: -1m}\n"), "policy.jitter: negative duration"},
		{"short interval", base(img + server + "    policy: {interval: 10ms}\n"), "policy.interval: 10ms is too short"},
		{"backoff order", base(img + server + "    policy: {backoff_min: 1h, backoff_max: 1m}\n"), "policy.backoff_max: 1m0s is shorter than backoff_min 1h0m0s"},
		{"keep", base(img + server + "    keep: -1\n"), "images[0] (web).keep: -1"},
		{"mirror scheme", "state_dir: /s\nmirrors: {docker.io: [\"https://m\"]}\n", "mirrors.docker.io[0]"},
		{"platform", "state_dir: /s\nplatform: arm64\n", `platform: "arm64"`},
		{"label key", "state_dir: /s\nlabels: {\"a b\": x}\n", `labels: key "a b"`},
		{"label value", "state_dir: /s\nlabels: {group: \"can ary\"}\n", `labels.group: "can ary"`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := ParseConfig([]byte(c.yaml))
			if !errors.Is(err, ErrConfig) || !strings.Contains(err.Error(), c.want) {
				t.Errorf("err = %v\nwant ErrConfig naming %q", err, c.want)
			}
		})
	}
}

func TestLoadConfig(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "agent.yaml")
	if _, err := LoadConfig(p); !errors.Is(err, ErrConfig) {
		t.Errorf("missing file: %v", err)
	}
	os.WriteFile(p, []byte("state_dir: [\n"), 0o644)
	if _, err := LoadConfig(p); !errors.Is(err, ErrConfig) || !strings.Contains(err.Error(), p) {
		t.Errorf("bad yaml: %v", err)
	}
	os.WriteFile(p, []byte(fullConfig), 0o644)
	c, err := LoadConfig(p)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Image("nope"); !errors.Is(err, ErrUnknownImage) || !strings.Contains(err.Error(), "web, cam") {
		t.Errorf("Image: %v", err)
	}
	// token_file is read when used.
	tok := filepath.Join(dir, "token")
	os.WriteFile(tok, []byte("  secret\n"), 0o600)
	if got, err := (SourceConfig{TokenFile: tok}).token(); err != nil || got != "secret" {
		t.Errorf("token = %q, %v", got, err)
	}
	os.WriteFile(tok, nil, 0o600)
	if _, err := (SourceConfig{TokenFile: tok}).token(); !errors.Is(err, ErrConfig) {
		t.Errorf("empty token file: %v", err)
	}
}
