// Package buildinfo says which skiff this is: its release, the commit it
// was built from, the Go toolchain and platform, and the delta format
// versions it reads and writes — for `skiff version` and for whatever
// tells a fleet which devices can read which deltas.
package buildinfo
