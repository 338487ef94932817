//go:build integration

package main

import (
	"io"
	"net"
	"sync"
	"sync/atomic"
	"testing"
)

// cutProxy forwards TCP connections to a backend and cuts each one after
// it has carried cutAfter bytes towards the client: a link that drops
// every few hundred KB. It counts the bytes it delivered and the cuts.
type cutProxy struct {
	ln        net.Listener
	backend   string
	cutAfter  int64
	delivered atomic.Int64
	cuts      atomic.Int64
	wg        sync.WaitGroup
}

func newCutProxy(t *testing.T, backend string, cutAfter int64) *cutProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &cutProxy{ln: ln, backend: backend, cutAfter: cutAfter}
	p.wg.Add(1)
	go p.serve()
	t.Cleanup(func() { ln.Close(); p.wg.Wait() })
	return p
}

// Addr is host:port of the proxy.
func (p *cutProxy) Addr() string { return p.ln.Addr().String() }

func (p *cutProxy) serve() {
	defer p.wg.Done()
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		p.wg.Add(1)
		go func() {
			defer p.wg.Done()
			p.handle(c)
		}()
	}
}

func (p *cutProxy) handle(client net.Conn) {
	defer client.Close()
	server, err := net.Dial("tcp", p.backend)
	if err != nil {
		return
	}
	defer server.Close()
	go func() {
		io.Copy(server, client)
		server.Close()
	}()
	n, _ := io.Copy(client, io.LimitReader(server, p.cutAfter))
	p.delivered.Add(n)
	if n == p.cutAfter {
		p.cuts.Add(1)
	}
}
