package server

import (
	"io/fs"
	"syscall"
	"time"
)

// atime is a file's access time (zero when unknown).
func atime(fi fs.FileInfo) time.Time {
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		return time.Unix(int64(st.Atim.Sec), int64(st.Atim.Nsec)) // int32 fields on linux/arm
	}
	return time.Time{}
}
