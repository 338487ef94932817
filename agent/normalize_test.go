package agent

import "testing"

func TestNormalizeName(t *testing.T) {
	mirrors := Mirrors{
		"docker.io": {"mirror.gcr.io", "docker.m.daocloud.io", "harbor.local/dockerhub", "harbor.local/dockerhub/deep"},
		"ghcr.io":   {"ghcr.mirror.example.com"},
	}
	cases := []struct{ in, want string }{
		{"nginx", "docker.io/library/nginx"},
		{"nginx:1.27", "docker.io/library/nginx:1.27"},
		{"library/nginx", "docker.io/library/nginx"},
		{"docker.io/nginx", "docker.io/library/nginx"},
		{"docker.io/library/nginx", "docker.io/library/nginx"},
		{"index.docker.io/library/nginx:latest", "docker.io/library/nginx:latest"},
		{"registry-1.docker.io/nginx", "docker.io/library/nginx"},
		{"registry.hub.docker.com/library/nginx", "docker.io/library/nginx"},
		{"docker://docker.io/nginx", "docker.io/library/nginx"},
		{"bitnami/redis", "docker.io/bitnami/redis"},
		{"nginx@sha256:0123", "docker.io/library/nginx@sha256:0123"},
		{"nginx:1.27@sha256:0123", "docker.io/library/nginx:1.27@sha256:0123"},
		// Mirrors stand for their upstream.
		{"mirror.gcr.io/library/nginx", "docker.io/library/nginx"},
		{"mirror.gcr.io/nginx:1", "docker.io/library/nginx:1"},
		{"docker.m.daocloud.io/bitnami/redis", "docker.io/bitnami/redis"},
		{"harbor.local/dockerhub/library/nginx", "docker.io/library/nginx"},
		{"harbor.local/dockerhub/nginx", "docker.io/library/nginx"},
		{"harbor.local/dockerhub/deep/nginx", "docker.io/library/nginx"}, // longest prefix wins
		{"harbor.local/other/nginx", "harbor.local/other/nginx"},         // not a mirrored prefix
		{"harbor.local/dockerhubx/nginx", "harbor.local/dockerhubx/nginx"},
		{"ghcr.mirror.example.com/org/app:2", "ghcr.io/org/app:2"},
		// Other registries are left alone (no library/).
		{"ghcr.io/org/app", "ghcr.io/org/app"},
		{"localhost/app", "localhost/app"},
		{"localhost:5000/app:1", "localhost:5000/app:1"},
		{"127.0.0.1:5000/app", "127.0.0.1:5000/app"},
		{"Registry.Example.com/App:Tag", "registry.example.com/app:Tag"},
	}
	for _, c := range cases {
		t.Run(c.in, func(t *testing.T) {
			got, err := NormalizeName(c.in, mirrors)
			if err != nil || got != c.want {
				t.Errorf("NormalizeName(%q) = %q, %v; want %q", c.in, got, err, c.want)
			}
		})
	}
	for _, bad := range []string{"", "docker://", "harbor.local/dockerhub", "a//b", "/x", ":tag"} {
		if got, err := NormalizeName(bad, mirrors); err == nil {
			t.Errorf("NormalizeName(%q) = %q, want an error", bad, got)
		}
	}
}

func TestSameRepository(t *testing.T) {
	m := Mirrors{"docker.io": {"mirror.gcr.io"}}
	cases := []struct {
		a, b string
		want bool
	}{
		{"nginx@sha256:aa", "docker.io/library/nginx", true},
		{"mirror.gcr.io/library/nginx:1", "index.docker.io/nginx:2", true},
		{"nginx", "nginx-unprivileged", false},
		{"ghcr.io/nginx", "nginx", false},
		{"mirror.gcr.io/library/nginx", "quay.io/library/nginx", false},
	}
	for _, c := range cases {
		if got := SameRepository(c.a, c.b, m); got != c.want {
			t.Errorf("SameRepository(%q, %q) = %v, want %v", c.a, c.b, got, c.want)
		}
	}
}
