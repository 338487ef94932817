//go:build !unix

package bench

import "os"

// maxRSS is not measured where wait4's rusage does not exist.
func maxRSS(*os.ProcessState) int64 { return 0 }
