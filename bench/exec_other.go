//go:build !unix

package bench

import "os/exec"

// killGroupOnCancel leaves cmd as it is: only the process itself is killed.
func killGroupOnCancel(*exec.Cmd) {}
