package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestSigningCLI: key generate, diff --sign, sign, inspect and apply
// --trust / --allow-unsigned / $SKIFF_TRUSTED_KEYS.
func TestSigningCLI(t *testing.T) {
	dir := t.TempDir()
	if _, _, err := run(t, "example", dir); err != nil {
		t.Fatal(err)
	}
	keys := map[string]string{}
	for _, name := range []string{"old", "new", "other"} {
		out, _, err := run(t, "key", "generate", "-o", filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		f := strings.Fields(out)
		if len(f) < 2 || len(strings.TrimSuffix(f[1], ":")) != 16 {
			t.Fatalf("key generate printed %q, want the 16-hex-digit key ID", out)
		}
		keys[name] = strings.TrimSuffix(f[1], ":")
	}
	if st, err := os.Stat(filepath.Join(dir, "old.key")); err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("old.key: %v, %v", st, err)
	}
	if _, _, err := run(t, "key", "generate", "-o", filepath.Join(dir, "old")); err == nil {
		t.Error("key generate overwrote old.key")
	}
	from, to := "docker-archive:"+dir+"/old.tar", "docker-archive:"+dir+"/new.tar"
	unsigned := filepath.Join(dir, "unsigned.skiff")
	if _, _, err := run(t, "diff", "--from", from, "--to", to, "-o", unsigned, "--level", "1"); err != nil {
		t.Fatal(err)
	}
	signed := filepath.Join(dir, "signed.skiff")
	out, _, err := run(t, "sign", unsigned, "--key", filepath.Join(dir, "old.key"), "--key", filepath.Join(dir, "new.key"), "-o", signed)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out, keys["old"]) || !strings.Contains(out, keys["new"]) {
		t.Errorf("sign output lacks the key IDs: %s", out)
	}
	onlyOther := filepath.Join(dir, "other.skiff")
	if _, _, err := run(t, "sign", signed, "--key", filepath.Join(dir, "other.key"), "--replace", "-o", onlyOther); err != nil {
		t.Fatal(err)
	}
	inspect := func(args ...string) (deltaReport, error) {
		out, _, err := run(t, append([]string{"inspect", "-o", "json"}, args...)...)
		var rep deltaReport
		if err == nil {
			err = json.Unmarshal([]byte(out), &rep)
		}
		return rep, err
	}
	rep, err := inspect(signed)
	if err != nil || strings.Join(rep.SignedBy, ",") != keys["old"]+","+keys["new"] || rep.VerifiedBy != "" {
		t.Errorf("inspect signed: %+v, %v", rep.SignedBy, err)
	}
	if rep, err = inspect(signed, "--trust", filepath.Join(dir, "new.pub")); err != nil || rep.VerifiedBy != keys["new"] {
		t.Errorf("inspect --trust new.pub: verified by %q, %v", rep.VerifiedBy, err)
	}
	if _, err = inspect(onlyOther, "--trust", filepath.Join(dir, "new.pub")); err == nil || !strings.Contains(err.Error(), "not signed by a trusted key") {
		t.Errorf("inspect of a delta by another key with --trust: %v", err)
	}

	base := "docker-archive:" + dir + "/old.tar"
	tests := []struct {
		name    string
		delta   string
		args    []string
		env     string
		wantErr string // "" = applies
		wantOut string // in stdout or stderr
	}{
		{"unsigned refused by default", unsigned, nil, "", "delta is not signed", "--trust"},
		{"unsigned with --allow-unsigned", unsigned, []string{"--allow-unsigned"}, "", "", "warning: --allow-unsigned"},
		{"signed, no key trusted", signed, nil, "", "no public keys are trusted", "--trust"},
		{"signed, trusted old key", signed, []string{"--trust", filepath.Join(dir, "old.pub")}, "", "", keys["old"] + " verified"},
		{"signed, trusted new key from the environment", signed, nil, filepath.Join(dir, "new.pub"), "", keys["new"] + " verified"},
		{"signed by another key", onlyOther, []string{"--trust", filepath.Join(dir, "old.pub")}, "", "not signed by a trusted key", keys["other"]},
		{"another key, even with --allow-unsigned", onlyOther, []string{"--trust", filepath.Join(dir, "old.pub"), "--allow-unsigned"}, "", "not signed by a trusted key", ""},
		{"missing key file", signed, []string{"--trust", filepath.Join(dir, "nope.pub")}, "", "nope.pub", ""},
		{"private key as trusted key", signed, []string{"--trust", filepath.Join(dir, "old.key")}, "", "PUBLIC KEY", ""},
	}
	for i, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Setenv(trustedKeysEnv, tc.env)
			outFile := filepath.Join(dir, "out", strings.ReplaceAll(tc.name, " ", "-")+".tar")
			os.MkdirAll(filepath.Dir(outFile), 0o755)
			args := append([]string{"apply", "--base", base, "--delta", tc.delta, "--output", "docker-archive:" + outFile}, tc.args...)
			stdout, stderr, err := run(t, args...)
			if tc.wantErr == "" {
				if err != nil {
					t.Fatalf("apply: %v", err)
				}
				if _, err := os.Stat(outFile); err != nil {
					t.Errorf("no output: %v", err)
				}
			} else {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("apply error = %v, want one containing %q", err, tc.wantErr)
				}
				if _, err := os.Stat(outFile); !os.IsNotExist(err) {
					t.Errorf("a refused delta wrote %s (%v)", outFile, err)
				}
				stderr += err.Error()
			}
			if !strings.Contains(stdout+stderr, tc.wantOut) {
				t.Errorf("case %d: output lacks %q:\n%s\n%s", i, tc.wantOut, stdout, stderr)
			}
		})
	}
}

// TestKeyGenerateName: -o x.key and -o x.pub write x.key and x.pub (not
// x.key.key); -o - is refused instead of writing files named "-.key".
func TestKeyGenerateName(t *testing.T) {
	for _, tc := range []struct {
		arg, want string // want: the NAME of the pair written; "" refused
	}{
		{"plain", "plain"},
		{"withkey.key", "withkey"},
		{"withpub.pub", "withpub"},
		{"-", ""},
		{".key", ""},
	} {
		t.Run(tc.arg, func(t *testing.T) {
			dir := t.TempDir()
			t.Chdir(dir)
			_, _, err := run(t, "key", "generate", "-o", tc.arg)
			var got []string
			ents, _ := os.ReadDir(dir)
			for _, e := range ents {
				got = append(got, e.Name())
			}
			if tc.want == "" {
				if err == nil || exitCode(err) != 2 || len(got) != 0 {
					t.Errorf("err %v (exit %d), files %v; want a usage error and no files", err, exitCode(err), got)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if want := []string{tc.want + ".key", tc.want + ".pub"}; strings.Join(got, " ") != strings.Join(want, " ") {
				t.Errorf("files %v, want %v", got, want)
			}
		})
	}
}
