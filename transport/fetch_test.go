package transport

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"
)

// flakyServer serves data honouring Range ("bytes=N-" and "bytes=N-M"),
// but cuts the connection after cut bytes of every response (0 = never).
// ignoreRange answers every request with the whole file (200).
type flakyServer struct {
	data        []byte
	cut         int64
	ignoreRange bool
	requests    atomic.Int64
	sent        atomic.Int64 // body bytes written to the connection
}

func (s *flakyServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s.requests.Add(1)
	size := int64(len(s.data))
	start, end := int64(0), size-1
	status := http.StatusOK
	if rg := r.Header.Get("Range"); rg != "" && !s.ignoreRange {
		spec, ok := strings.CutPrefix(rg, "bytes=")
		a, b, ok2 := strings.Cut(spec, "-")
		var err error
		if start, err = strconv.ParseInt(a, 10, 64); !ok || !ok2 || err != nil {
			http.Error(w, "bad range", http.StatusBadRequest)
			return
		}
		if b != "" {
			if end, err = strconv.ParseInt(b, 10, 64); err != nil || end >= size {
				http.Error(w, "bad range", http.StatusBadRequest)
				return
			}
		}
		if start >= size {
			w.Header().Set("Content-Range", fmt.Sprintf("bytes */%d", size))
			w.WriteHeader(http.StatusRequestedRangeNotSatisfiable)
			return
		}
		w.Header().Set("Content-Range", fmt.Sprintf("bytes %d-%d/%d", start, end, size))
		status = http.StatusPartialContent
	}
	body := s.data[start : end+1]
	w.Header().Set("Content-Length", strconv.Itoa(len(body)))
	w.Header().Set("ETag", `"v1"`)
	w.WriteHeader(status)
	if s.cut <= 0 || int64(len(body)) <= s.cut {
		n, _ := w.Write(body)
		s.sent.Add(int64(n))
		return
	}
	n, _ := w.Write(body[:s.cut])
	s.sent.Add(int64(n))
	w.(http.Flusher).Flush()
	conn, _, err := w.(http.Hijacker).Hijack()
	if err == nil {
		conn.Close()
	}
}

func sha(b []byte) digest.Digest { return digest.FromBytes(b) }

// fast are FetchOptions with short waits for tests.
func fast(o FetchOptions) FetchOptions {
	o.InitialBackoff, o.MaxBackoff = time.Millisecond, 20*time.Millisecond
	return o
}

func TestFetchSurvivesCuts(t *testing.T) {
	data := noise(10, 5<<20)
	srv := &flakyServer{data: data, cut: 300 << 10}
	hs := httptest.NewServer(srv)
	defer hs.Close()
	dst := filepath.Join(t.TempDir(), "delta")
	var calls int
	st, err := Fetch(context.Background(), hs.URL+"/delta", dst, fast(FetchOptions{
		Digest: sha(data), Size: int64(len(data)),
		Progress: func(done, total int64) {
			calls++
			if total != int64(len(data)) || done > total {
				t.Errorf("progress %d of %d", done, total)
			}
		},
	}))
	if err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(dst)
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("fetched file differs (%v)", err)
	}
	if _, err := os.Stat(dst + ".part"); !os.IsNotExist(err) {
		t.Error(".part left behind")
	}
	size := int64(len(data))
	minCuts := int(size / srv.cut)
	refetchPct := 100 * float64(st.Refetched) / float64(size)
	sentPct := 100 * float64(srv.sent.Load()-size) / float64(size)
	t.Logf("5 MiB, cut every 300 KiB: %d requests, %d retries, received %d bytes, refetched %d (%.2f%%), server sent %.2f%% extra",
		srv.requests.Load(), st.Retries, st.Bytes, st.Refetched, refetchPct, sentPct)
	if st.Retries < minCuts || int(srv.requests.Load()) != st.Retries+1 {
		t.Errorf("%d retries, %d requests: the server cut %d times at least", st.Retries, srv.requests.Load(), minCuts)
	}
	if refetchPct >= 5 || sentPct >= 5 {
		t.Errorf("refetched %.2f%%, server sent %.2f%% extra: want < 5%% of the file", refetchPct, sentPct)
	}
	if st.Bytes < size || calls == 0 {
		t.Errorf("received %d bytes, progress called %d times", st.Bytes, calls)
	}
}

// TestFetchRangeIgnored: a server that sends the whole file (200) to a
// Range request is read from the start.
func TestFetchRangeIgnored(t *testing.T) {
	data := noise(11, 1<<20)
	srv := &flakyServer{data: data, ignoreRange: true}
	hs := httptest.NewServer(srv)
	defer hs.Close()
	dst := filepath.Join(t.TempDir(), "f")
	os.WriteFile(dst+".part", data[:300<<10], 0o644)
	st, err := Fetch(context.Background(), hs.URL, dst, fast(FetchOptions{Digest: sha(data), Size: int64(len(data))}))
	if err != nil {
		t.Fatal(err)
	}
	if got, _ := os.ReadFile(dst); !bytes.Equal(got, data) {
		t.Fatal("file differs")
	}
	if st.Resumed != 300<<10 || st.Bytes != int64(len(data)) || st.Refetched != 300<<10 {
		t.Errorf("stats %+v: want the 300 KiB kept on disk counted as refetched", st)
	}

	// Such a server that also cuts every response can never deliver the
	// file: Fetch must give up, not loop.
	cutting := &flakyServer{data: data, ignoreRange: true, cut: 200 << 10}
	hs2 := httptest.NewServer(cutting)
	defer hs2.Close()
	_, err = Fetch(context.Background(), hs2.URL, filepath.Join(t.TempDir(), "g"), fast(FetchOptions{Digest: sha(data), Size: int64(len(data)), MaxRetries: 5}))
	if err == nil || !strings.Contains(err.Error(), "giving up after 6 tries") || cutting.requests.Load() != 7 {
		t.Errorf("err = %v after %d requests; want to give up after the first and 6 without progress", err, cutting.requests.Load())
	}
}

func TestFetchResumesPart(t *testing.T) {
	data := noise(12, 1<<20)
	for _, tc := range []struct {
		name      string
		part      []byte
		wantBytes int64
		wantReqs  int64
	}{
		{"a third on disk", data[:len(data)/3], int64(len(data) - len(data)/3), 1},
		{"complete but not renamed", data, 0, 0},
		{"longer than the file", append(append([]byte{}, data...), 1, 2, 3), int64(len(data)), 1},
		{"empty part", nil, int64(len(data)), 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := &flakyServer{data: data}
			hs := httptest.NewServer(srv)
			defer hs.Close()
			dst := filepath.Join(t.TempDir(), "f")
			os.WriteFile(dst+".part", tc.part, 0o644)
			st, err := Fetch(context.Background(), hs.URL, dst, fast(FetchOptions{Digest: sha(data), Size: int64(len(data))}))
			if err != nil {
				t.Fatal(err)
			}
			if got, _ := os.ReadFile(dst); !bytes.Equal(got, data) {
				t.Fatal("file differs")
			}
			if st.Bytes != tc.wantBytes || srv.requests.Load() != tc.wantReqs || st.Refetched != 0 {
				t.Errorf("stats %+v, %d requests; want %d bytes in %d requests", st, srv.requests.Load(), tc.wantBytes, tc.wantReqs)
			}
		})
	}
}

// TestFetchRejects: wrong content or size leaves neither dst nor a partial
// file; permanent HTTP errors are not retried.
func TestFetchRejects(t *testing.T) {
	data := noise(13, 256<<10)
	wrong := append([]byte{}, data...)
	wrong[1000] ^= 1
	for _, tc := range []struct {
		name      string
		serve     []byte
		o         FetchOptions
		status    int
		part      []byte
		wantErr   error
		wantReqs  int64
		wantInErr string
	}{
		{name: "wrong content", serve: wrong, o: FetchOptions{Digest: sha(data), Size: int64(len(data))}, wantErr: ErrDigest, wantReqs: 1},
		// A resumed download that does not verify is fetched once more, whole.
		{name: "wrong content after resume", serve: wrong, part: data[:1000], o: FetchOptions{Digest: sha(data), Size: int64(len(data))}, wantErr: ErrDigest, wantReqs: 2},
		{name: "wrong content, size unknown", serve: wrong, o: FetchOptions{Digest: sha(data), Size: -1}, wantErr: ErrDigest, wantReqs: 1},
		{name: "longer than declared", serve: data, o: FetchOptions{Size: int64(len(data)) - 1}, wantErr: ErrSize, wantReqs: 1},
		{name: "not found", status: http.StatusNotFound, o: FetchOptions{Size: 10}, wantInErr: "404", wantReqs: 1},
		{name: "forbidden", status: http.StatusForbidden, wantInErr: "403", wantReqs: 1},
		{name: "unavailable, give up", status: http.StatusServiceUnavailable, o: FetchOptions{MaxRetries: 3}, wantInErr: "giving up after 4 tries", wantReqs: 4},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var reqs atomic.Int64
			hs := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				reqs.Add(1)
				if tc.status != 0 {
					http.Error(w, "no", tc.status)
					return
				}
				http.ServeContent(w, r, "", time.Time{}, bytes.NewReader(tc.serve))
			}))
			defer hs.Close()
			dst := filepath.Join(t.TempDir(), "f")
			if tc.part != nil {
				os.WriteFile(dst+".part", tc.part, 0o644)
			}
			_, err := Fetch(context.Background(), hs.URL, dst, fast(tc.o))
			if err == nil || (tc.wantErr != nil && !errors.Is(err, tc.wantErr)) || !strings.Contains(err.Error(), tc.wantInErr) {
				t.Fatalf("err = %v, want %v %q", err, tc.wantErr, tc.wantInErr)
			}
			if _, err := os.Stat(dst); !os.IsNotExist(err) {
				t.Error("dst written")
			}
			if tc.wantErr != nil {
				if _, err := os.Stat(dst + ".part"); !os.IsNotExist(err) {
					t.Error("a partial file of the wrong content is kept")
				}
			}
			if reqs.Load() != tc.wantReqs {
				t.Errorf("%d requests, want %d", reqs.Load(), tc.wantReqs)
			}
		})
	}
}

// TestFetchTransient: 503s and a cut before the first byte are retried.
func TestFetchTransient(t *testing.T) {
	data := noise(14, 100<<10)
	var n atomic.Int64
	hs := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch n.Add(1) {
		case 1, 2:
			http.Error(w, "busy", http.StatusServiceUnavailable)
		case 3:
			conn, _, _ := w.(http.Hijacker).Hijack()
			conn.Close()
		default:
			http.ServeContent(w, r, "", time.Time{}, bytes.NewReader(data))
		}
	}))
	defer hs.Close()
	dst := filepath.Join(t.TempDir(), "f")
	st, err := Fetch(context.Background(), hs.URL, dst, fast(FetchOptions{Digest: sha(data), Size: -1}))
	if err != nil {
		t.Fatal(err)
	}
	if st.Retries != 3 || st.Bytes != int64(len(data)) {
		t.Errorf("stats %+v, want 3 retries", st)
	}
}

func TestFetchLimitRate(t *testing.T) {
	data := noise(15, 2<<20)
	hs := httptest.NewServer(&flakyServer{data: data})
	defer hs.Close()
	dst := filepath.Join(t.TempDir(), "f")
	start := time.Now()
	_, err := Fetch(context.Background(), hs.URL, dst, FetchOptions{Digest: sha(data), Size: int64(len(data)), LimitRate: 1 << 20})
	if err != nil {
		t.Fatal(err)
	}
	took := time.Since(start)
	t.Logf("2 MiB at --limit-rate 1 MiB/s took %v", took)
	if took < 1700*time.Millisecond || took > 4*time.Second {
		t.Errorf("took %v, want about 2s", took)
	}
}

// TestFetchCancel: cancelling keeps the partial file; the next Fetch
// continues from it.
func TestFetchCancel(t *testing.T) {
	data := noise(16, 1<<20)
	srv := &flakyServer{data: data}
	hs := httptest.NewServer(srv)
	defer hs.Close()
	dst := filepath.Join(t.TempDir(), "f")
	ctx, cancel := context.WithCancel(context.Background())
	o := FetchOptions{Digest: sha(data), Size: int64(len(data)), LimitRate: 2 << 20,
		Progress: func(done, _ int64) {
			if done >= 300<<10 {
				cancel()
			}
		}}
	_, err := Fetch(ctx, hs.URL, dst, o)
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v, want context.Canceled", err)
	}
	fi, err := os.Stat(dst + ".part")
	if err != nil || fi.Size() < 300<<10 || fi.Size() >= int64(len(data)) {
		t.Fatalf("partial file after cancel: %v, %v", fi, err)
	}
	if _, err := os.Stat(dst); !os.IsNotExist(err) {
		t.Fatal("dst exists after cancel")
	}
	o.Progress, o.LimitRate = nil, 0
	st, err := Fetch(context.Background(), hs.URL, dst, o)
	if err != nil {
		t.Fatal(err)
	}
	if got, _ := os.ReadFile(dst); !bytes.Equal(got, data) {
		t.Fatal("file differs")
	}
	if st.Resumed != fi.Size() || st.Bytes != int64(len(data))-fi.Size() {
		t.Errorf("stats %+v: want to continue from %d", st, fi.Size())
	}
}

func TestParseContentRange(t *testing.T) {
	for _, tc := range []struct {
		in           string
		start, total int64
		ok           bool
	}{
		{"bytes 0-99/100", 0, 100, true},
		{"bytes 10-99/*", 10, -1, true},
		{"bytes */100", -1, 100, true},
		{"bytes 10-200/100", 0, 0, false},
		{"bytes 20-10/100", 0, 0, false},
		{"items 0-1/2", 0, 0, false},
		{"bytes 0-1", 0, 0, false},
		{"bytes -1-5/10", 0, 0, false},
		{"", 0, 0, false},
	} {
		t.Run(tc.in, func(t *testing.T) {
			start, total, err := parseContentRange(tc.in)
			if (err == nil) != tc.ok || (tc.ok && (start != tc.start || total != tc.total)) {
				t.Errorf("parseContentRange(%q) = %d, %d, %v", tc.in, start, total, err)
			}
		})
	}
}

// TestFetchStalls: a server that accepts and never answers, and one whose
// body stalls after a few bytes, are cut after StallTimeout and the next
// try resumes; a server that never answers at all makes Fetch give up
// with ErrStalled instead of hanging.
func TestFetchStalls(t *testing.T) {
	data := noise(15, 64<<10)
	tests := []struct {
		name   string
		stall  func(n int64) bool // whether request n stalls
		before int                // body bytes sent before a stall (-1: no headers)
		want   error
	}{
		{"no headers, then answers", func(n int64) bool { return n == 1 }, -1, nil},
		{"body stalls mid-way, then answers", func(n int64) bool { return n <= 2 }, 1000, nil},
		{"never answers", func(int64) bool { return true }, -1, ErrStalled},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var n atomic.Int64
			release := make(chan struct{})
			hs := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if tc.stall(n.Add(1)) {
					if tc.before >= 0 {
						w.Header().Set("Content-Length", strconv.Itoa(len(data)))
						w.WriteHeader(http.StatusOK)
						w.Write(data[:tc.before])
						w.(http.Flusher).Flush()
					}
					select {
					case <-release:
					case <-r.Context().Done():
					}
					return
				}
				http.ServeContent(w, r, "", time.Time{}, bytes.NewReader(data))
			}))
			defer hs.Close()
			defer close(release)
			dst := filepath.Join(t.TempDir(), "f")
			o := fast(FetchOptions{Digest: sha(data), Size: -1, StallTimeout: 100 * time.Millisecond, MaxRetries: 3})
			start := time.Now()
			st, err := Fetch(context.Background(), hs.URL, dst, o)
			if !errors.Is(err, tc.want) || (err != nil) != (tc.want != nil) {
				t.Fatalf("err = %v, want %v", err, tc.want)
			}
			if el := time.Since(start); el > 10*time.Second {
				t.Errorf("took %s", el)
			}
			if tc.want != nil {
				if !strings.Contains(err.Error(), "no byte from the server for 100ms") {
					t.Errorf("err = %q, want it to say how long the server was silent", err)
				}
				return
			}
			if st.Retries == 0 {
				t.Errorf("stats %+v, want a retry after the stall", st)
			}
			got, err := os.ReadFile(dst)
			if err != nil || !bytes.Equal(got, data) {
				t.Fatalf("file differs from the data (err %v)", err)
			}
		})
	}
}
