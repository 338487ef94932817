package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"sync"
	"syscall"
)

// interrupts turns the signals that end skiff — SIGINT (^C), SIGTERM (kill,
// systemd) and SIGHUP (a dropped ssh session, a closed terminal, a killed
// tmux) — into the cancellation of one context, so every command unwinds
// and removes its temporary files as it does for any other error. A
// second signal ends skiff at once, without cleaning up.
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
		select {
		case s := <-in.ch:
			in.mu.Lock()
			in.sig = s
			in.mu.Unlock()
			cancel()
		case <-in.done:
			return
		}
		select {
		case s := <-in.ch:
			fmt.Fprintln(errOut, "skiff: interrupted again: exiting without cleaning up")
			os.Exit(signalExitCode(s))
		case <-in.done:
		}
	}()
	return ctx, in
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
