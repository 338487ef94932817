package agent

import (
	"bytes"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestWarnSecrets: a token file, or a config holding a token inline, that
// other users can read is warned about at start; a 0600 one is not.
func TestWarnSecrets(t *testing.T) {
	t.Parallel()
	p := testPair(t)
	d := newDevice(t, p)
	tok := filepath.Join(d.dir, "token")
	os.WriteFile(tok, []byte("dev-token\n"), 0o644)
	for _, tc := range []struct {
		name, source string
		mode         os.FileMode
		warn         bool
	}{
		{"token file 0644", "server: http://127.0.0.1:9\ntoken_file: " + tok + "\nchannel: stable", 0o644, true},
		{"token file 0600", "server: http://127.0.0.1:9\ntoken_file: " + tok + "\nchannel: stable", 0o600, false},
		{"inline token, config 0644", serverSource("http://127.0.0.1:9"), 0o644, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			os.Chmod(tok, tc.mode)
			cfgPath := filepath.Join(t.TempDir(), "agent.yaml")
			os.WriteFile(cfgPath, []byte(d.yaml("true", tc.source, "")), 0o644)
			cfg, err := LoadConfig(cfgPath)
			if err != nil {
				t.Fatal(err)
			}
			var logs bytes.Buffer
			if _, err := New(cfg, WithLogger(slog.New(slog.NewTextHandler(&logs, nil)))); err != nil {
				t.Fatal(err)
			}
			if got := strings.Contains(logs.String(), "readable by other users"); got != tc.warn {
				t.Errorf("warned %v, want %v:\n%s", got, tc.warn, logs.String())
			}
		})
	}
}
