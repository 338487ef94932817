package agent

import (
	"errors"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// TestDockerRemoval: pruning untags only the agent's retained name (of
// the ref, when known), removes an image by ID only when no name refers to
// it, and keeps an image others named.
func TestDockerRemoval(t *testing.T) {
	const id = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
	const other = "sha256:fedcba9876543210fedcba9876543210fedcba9876543210fedcba9876543210"
	web := retainedName("web:stable", id)
	for _, tc := range []struct {
		name      string
		ref, got  string
		tags      []string
		wantNames []string
		wantByID  bool
		wantErr   error
	}{
		{"retained only", "web:stable", id, []string{web}, []string{web}, false, nil},
		{"retained and another name", "web:stable", id, []string{"other:keep", web}, []string{web}, false, nil},
		{"retained, normalized by docker", "docker.io/library/web:stable", id, []string{web}, []string{web}, false, nil},
		{"retained of another ref", "web:stable", id, []string{"cam:stable-skiff-0123456789ab"}, nil, false, ErrNotOurs},
		{"any retained without ref", "", id, []string{"cam:stable-skiff-0123456789ab", "x:y"}, []string{"cam:stable-skiff-0123456789ab"}, false, nil},
		{"untagged (an older agent's)", "web:stable", id, nil, nil, true, nil},
		{"only others' names", "web:stable", id, []string{"other:keep"}, nil, false, ErrNotOurs},
		{"retained name of another image", "web:stable", id, []string{retainedName("web:stable", other)}, nil, false, ErrNotOurs},
		{"ID resolves elsewhere", "web:stable", other, nil, nil, false, ErrNoImage},
	} {
		t.Run(tc.name, func(t *testing.T) {
			names, byID, err := dockerRemoval(tc.ref, id, tc.got, tc.tags)
			if !errors.Is(err, tc.wantErr) || (err != nil) != (tc.wantErr != nil) {
				t.Fatalf("err = %v, want %v", err, tc.wantErr)
			}
			if diff := cmp.Diff(tc.wantNames, names); diff != "" || byID != tc.wantByID {
				t.Errorf("names (-want +got):\n%s\nby ID %v, want %v", diff, byID, tc.wantByID)
			}
		})
	}
}
