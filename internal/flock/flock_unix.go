//go:build unix

package flock

import (
	"context"
	"errors"
	"os"
	"syscall"
	"time"
)

// poll is how often a waiting Lock tries again.
const poll = 20 * time.Millisecond

// Lock takes an exclusive flock on f, trying again until it is free or ctx
// ends (then it returns ctx's error). waiting, if not nil, is called once
// when Lock has to wait.
func Lock(ctx context.Context, f *os.File, waiting func()) error {
	waited := false
	for {
		err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
		if err == nil {
			return nil
		}
		if !errors.Is(err, syscall.EWOULDBLOCK) && !errors.Is(err, syscall.EINTR) {
			return err
		}
		if !waited && waiting != nil {
			waiting()
			waited = true
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(poll):
		}
	}
}

// unlock releases f's lock and closes it.
func unlock(f *os.File) {
	syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
	f.Close()
}
