package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"sync"
	"sync/atomic"
	"syscall"
)

// interrupts turns the signals that end skiff — SIGINT (^C), SIGTERM (kill,
// systemd) and SIGHUP (a dropped ssh session, a closed terminal, a killed
// tmux) — into the cancellation of one context, so every command unwinds
// and removes its temporary files as it does for any other error. A
// second signal ends skiff at once, without cleaning up. While a command
// has claimed SIGHUP (claimHangup: serve reloads its TLS certificate on
// it), SIGHUP is that command's and ends nothing.
type interrupts struct {
	ch   chan os.Signal
	done chan struct{}
	mu   sync.Mutex
	sig  os.Signal // the first signal, nil while none came
}

func notifyInterrupts(parent context.Context, errOut io.Writer) (context.Context, *interrupts) {
	ctx, cancel := context.WithCancel(parent)
	in := &interrupts{ch: make(chan os.Signal, 2), done: make(chan struct{})}
	signal.Notify(in.ch, os.Interrupt, syscall.SIGTERM, syscall.SIGHUP)
	go func() {
		defer cancel()
		s, ok := in.next()
		if !ok {
			return
		}
		in.mu.Lock()
		in.sig = s
		in.mu.Unlock()
		cancel()
		if s, ok := in.next(); ok {
			fmt.Fprintln(errOut, "skiff: interrupted again: exiting without cleaning up")
			os.Exit(signalExitCode(s))
		}
	}()
	return ctx, in
}

// next waits for a signal that ends skiff: not a SIGHUP a command claimed.
// It reports false once stop is called.
func (in *interrupts) next() (os.Signal, bool) {
	for {
		select {
		case s := <-in.ch:
			if s == syscall.SIGHUP && hangupClaims.Load() > 0 {
				continue
			}
			return s, true
		case <-in.done:
			return nil, false
		}
	}
}

// hangupClaims counts the claims of SIGHUP in force.
var hangupClaims atomic.Int32

// claimHangup makes SIGHUP the caller's until release is called: it no
// longer ends skiff, and hup receives it. release is idempotent.
func claimHangup() (hup <-chan os.Signal, release func()) {
	ch := make(chan os.Signal, 1)
	hangupClaims.Add(1)
	signal.Notify(ch, syscall.SIGHUP)
	var once sync.Once
	return ch, func() {
		once.Do(func() {
			signal.Stop(ch)
			hangupClaims.Add(-1)
		})
	}
}

// stop stops catching the signals and returns the first one caught, if
// any.
func (in *interrupts) stop() os.Signal {
	signal.Stop(in.ch)
	close(in.done)
	in.mu.Lock()
	defer in.mu.Unlock()
	return in.sig
}

// signalExitCode is the shell's code for a process a signal ended:
// 128 + the signal number (130 SIGINT, 143 SIGTERM, 129 SIGHUP).
func signalExitCode(s os.Signal) int {
	if n, ok := s.(syscall.Signal); ok {
		return 128 + int(n)
	}
	return 1
}
