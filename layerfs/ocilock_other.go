//go:build !unix

package layerfs

import "context"

// lockDir is a no-op where there is no flock: concurrent writers of one
// layout are not excluded there.
func lockDir(context.Context, string) (func(), error) { return func() {}, nil }
