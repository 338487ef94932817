package main

import (
	"context"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/skiff-dev/skiff/agent"
)

// TestWatchdog: under systemd's watchdog (NOTIFY_SOCKET, WATCHDOG_USEC)
// the agent is kept alive while its loop shows progress, and not when it
// shows none (a stuck agent is then restarted by systemd).
func TestWatchdog(t *testing.T) {
	dir := t.TempDir()
	sock := filepath.Join(dir, "notify")
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: sock, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	t.Setenv("NOTIFY_SOCKET", sock)
	t.Setenv("WATCHDOG_USEC", "300000")
	t.Setenv("WATCHDOG_PID", "")
	cfg, err := agent.ParseConfig([]byte("state_dir: " + dir + "\nimages:\n  - name: app\n    engine: oci:" + dir + "/img\n    ref: app:1\n" +
		"    source: {server: http://127.0.0.1:9, token: t, channel: stable}\n    policy: {interval: 1h}\n"))
	if err != nil {
		t.Fatal(err)
	}
	pings := func(d time.Duration) int {
		n := 0
		buf := make([]byte, 256)
		deadline := time.Now().Add(d)
		for {
			conn.SetReadDeadline(deadline)
			k, err := conn.Read(buf)
			if err != nil {
				return n
			}
			if strings.Contains(string(buf[:k]), "WATCHDOG=1") {
				n++
			}
		}
	}
	stuck, err := agent.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	go watchdog(ctx, stuck)
	if n := pings(700 * time.Millisecond); n != 0 {
		t.Errorf("an agent that never showed progress fed the watchdog %d times", n)
	}
	cancel()

	live, err := agent.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel = context.WithCancel(context.Background())
	defer cancel()
	go live.Run(ctx)
	go watchdog(ctx, live)
	if n := pings(700 * time.Millisecond); n < 2 {
		t.Errorf("a running agent fed the watchdog %d times in 0.7 s (interval 0.3 s)", n)
	}
	os.Unsetenv("NOTIFY_SOCKET")
}
