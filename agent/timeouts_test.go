package agent

import (
	"context"
	"net"
	"strings"
	"testing"
	"time"
)

// TestCheckServerNeverAnswers: a server that accepts the connection and
// never answers makes the check fail after network.response_timeout,
// with an error that says so, instead of holding the agent.
func TestCheckServerNeverAnswers(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	held := make(chan net.Conn, 16)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			held <- c // read nothing, answer nothing
		}
	}()
	defer func() {
		close(held)
		for c := range held {
			c.Close()
		}
	}()
	p := testPair(t)
	d := newDevice(t, p)
	c := d.config(t, serverSource("http://"+ln.Addr().String()), "")
	if c.Network.ResponseTimeout.D() != DefaultResponseTimeout || c.Network.StallTimeout.D() != DefaultStallTimeout {
		t.Fatalf("network defaults %+v", c.Network)
	}
	c.Network.ResponseTimeout = Duration(time.Second)
	a := newAgent(t, c)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	start := time.Now()
	_, err = a.Check(ctx, "web")
	el := time.Since(start)
	if err == nil || !strings.Contains(err.Error(), "no answer within 1s (network.response_timeout)") {
		t.Fatalf("err = %v, want it to say the server did not answer within 1s", err)
	}
	if el > 10*time.Second {
		t.Errorf("the check took %s with a 1s response timeout", el)
	}
}

func TestNetworkConfigErrors(t *testing.T) {
	d := newDevice(t, testPair(t))
	for _, tc := range []struct{ field, value, msg string }{
		{"connect_timeout", "100ms", "network.connect_timeout: 100ms is too short"},
		{"response_timeout", "-1s", "network.response_timeout"},
		{"stall_timeout", "soon", `line 2: "soon" is not a duration`},
	} {
		y := "network:\n  " + tc.field + ": " + tc.value + "\n" + d.yaml("true", serverSource("http://127.0.0.1:1"), "")
		_, err := ParseConfig([]byte(y))
		if err == nil || !strings.Contains(err.Error(), tc.msg) {
			t.Errorf("%s: %s: err = %v, want it to say %q", tc.field, tc.value, err, tc.msg)
		}
	}
}
