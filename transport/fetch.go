package transport

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"hash"
	"io"
	"math/rand/v2"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/cenkalti/backoff/v4"
	"github.com/opencontainers/go-digest"
	"golang.org/x/time/rate"

	"github.com/skiff-dev/skiff/internal/atomicfile"
)

// FetchOptions configure Fetch. The zero value downloads without checks.
type FetchOptions struct {
	// Digest is the expected digest of the whole file ("" = don't check).
	Digest digest.Digest
	// Size is the expected size in bytes; 0 or -1 mean unknown (then the
	// server's Content-Length or Content-Range is used, when it sends one).
	Size int64
	// Header is added to every request, e.g. Authorization: Bearer ...
	Header http.Header
	// LimitRate caps the download rate in bytes/s; 0 = unlimited.
	LimitRate int64
	// Limiter, when set, is shared by several Fetches that together must
	// keep under one rate (tokens are bytes; its burst must be at least
	// 1); it replaces LimitRate.
	Limiter *rate.Limiter
	// Client sends the requests (default http.DefaultClient).
	Client *http.Client
	// Progress, when set, is called after every chunk with the bytes on
	// disk and the total (-1 while unknown).
	Progress func(done, total int64)
	// MaxRetries is how many tries in a row may fail without receiving a
	// byte before Fetch gives up (default 20). A try that receives bytes
	// resets the count and the backoff, so a link that drops every few
	// hundred kilobytes still completes.
	MaxRetries int
	// InitialBackoff is the first wait between tries (default 500ms); it
	// doubles up to MaxBackoff (default 30s), each wait drawn uniformly
	// from [0, interval] (full jitter).
	InitialBackoff, MaxBackoff time.Duration
	// StallTimeout cuts a try whose server sends nothing, neither the
	// response headers nor a body byte, for this long (default 60s): the
	// try counts as failed (ErrStalled) and the next resumes where it
	// stopped. A download that keeps making progress, however slowly, is
	// never cut.
	StallTimeout time.Duration
}

// FetchStats say what a Fetch cost on the wire.
type FetchStats struct {
	// Bytes is how many body bytes were received.
	Bytes int64
	// Refetched is how many of those were not needed: received beyond what
	// the file lacked when Fetch started (a server that ignored Range, a
	// partial file that had to be discarded).
	Refetched int64
	// Retries is how many times a request was sent again after a failure.
	Retries int
	// Resumed is the size of the partial file Fetch started from.
	Resumed int64
}

const (
	defaultMaxRetries     = 20
	defaultInitialBackoff = 500 * time.Millisecond
	defaultMaxBackoff     = 30 * time.Second
	defaultStallTimeout   = time.Minute
	copyChunk             = 32 << 10
)

// Fetch downloads url to dst, resuming from dst+".part" with Range requests
// after any cut, and renames to dst only when complete and verified.
//
// A partial file from an earlier, interrupted Fetch is continued, not
// restarted; one longer than Size is discarded. A server that answers a
// Range request with the whole file (200) is read from the start. When the
// digest does not match after a resumed download, the file is fetched once
// more from the start (the partial file may have been damaged); a second
// mismatch is ErrDigest and removes the partial file. Cancelling ctx stops
// at once and keeps dst+".part" for the next call.
func Fetch(ctx context.Context, rawURL, dst string, o FetchOptions) (FetchStats, error) {
	f, err := newFetch(rawURL, dst, o)
	if err != nil {
		return FetchStats{}, err
	}
	err = f.run(ctx)
	// What the file lacked at the start is what had to come over the wire.
	f.stats.Refetched = max(0, f.stats.Bytes-max(0, f.off-f.stats.Resumed))
	if err != nil {
		return f.stats, fmt.Errorf("fetch %s: %w", rawURL, err)
	}
	return f.stats, nil
}

type fetch struct {
	url, dst, part string
	o              FetchOptions
	client         *http.Client
	lim            *rate.Limiter
	chunk          int
	watchdog       *time.Timer // the running try's stall timer (attempt)

	file  *os.File
	hash  hash.Hash
	off   int64 // bytes in the partial file
	total int64 // expected size, -1 while unknown
	// resumed: the bytes on disk did not all come from one response, so a
	// digest mismatch may be the partial file's fault.
	resumed   bool
	high      int64  // the most bytes the partial file has held
	validator string // ETag or Last-Modified for If-Range
	stats     FetchStats
}

// permanent marks errors no retry can fix.
type permanent struct{ err error }

func (p *permanent) Error() string { return p.err.Error() }
func (p *permanent) Unwrap() error { return p.err }

func newFetch(rawURL, dst string, o FetchOptions) (*fetch, error) {
	u, err := url.Parse(rawURL)
	if err != nil {
		return nil, fmt.Errorf("fetch %q: %w", rawURL, err)
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return nil, fmt.Errorf("fetch %q: only http and https URLs can be fetched", rawURL)
	}
	if o.Digest != "" {
		if err := o.Digest.Validate(); err != nil {
			return nil, fmt.Errorf("fetch %s: expected digest %q: %w", rawURL, o.Digest, err)
		}
	}
	if o.LimitRate < 0 || o.MaxRetries < 0 || o.StallTimeout < 0 {
		return nil, fmt.Errorf("fetch %s: negative LimitRate, MaxRetries or StallTimeout", rawURL)
	}
	if o.StallTimeout == 0 {
		o.StallTimeout = defaultStallTimeout
	}
	if o.MaxRetries == 0 {
		o.MaxRetries = defaultMaxRetries
	}
	if o.InitialBackoff <= 0 {
		o.InitialBackoff = defaultInitialBackoff
	}
	if o.MaxBackoff <= 0 {
		o.MaxBackoff = defaultMaxBackoff
	}
	f := &fetch{url: rawURL, dst: dst, part: dst + ".part", o: o, client: o.Client, total: -1, chunk: copyChunk}
	if f.client == nil {
		f.client = http.DefaultClient
	}
	if o.Size > 0 {
		f.total = o.Size
	}
	switch {
	case o.Limiter != nil:
		if o.Limiter.Burst() < 1 {
			return nil, fmt.Errorf("fetch %s: rate limiter with burst %d", rawURL, o.Limiter.Burst())
		}
		f.chunk = min(copyChunk, o.Limiter.Burst())
		f.lim = o.Limiter
	case o.LimitRate > 0:
		f.chunk = int(min(int64(copyChunk), o.LimitRate))
		f.lim = rate.NewLimiter(rate.Limit(o.LimitRate), f.chunk)
	}
	f.hash = sha256.New()
	if o.Digest != "" {
		if !o.Digest.Algorithm().Available() {
			return nil, fmt.Errorf("fetch %s: digest algorithm %q is not available", rawURL, o.Digest.Algorithm())
		}
		f.hash = o.Digest.Algorithm().Hash()
	}
	return f, nil
}

func (f *fetch) run(ctx context.Context) (err error) {
	if err := os.MkdirAll(filepath.Dir(f.dst), 0o755); err != nil {
		return err
	}
	if err := f.openPart(); err != nil {
		return err
	}
	defer func() {
		if f.file != nil {
			// Keep what arrived for the next call.
			f.file.Sync()
			f.file.Close()
		}
	}()

	bo := backoff.NewExponentialBackOff(
		backoff.WithInitialInterval(f.o.InitialBackoff),
		backoff.WithMaxInterval(f.o.MaxBackoff),
		backoff.WithRandomizationFactor(0), // full jitter is drawn below
		backoff.WithMultiplier(2),
		backoff.WithMaxElapsedTime(0),
	)
	failures := 0
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		err = nil
		if f.total < 0 || f.off != f.total {
			err = f.attempt(ctx)
		}
		// Progress is the file growing past where it ever was: a server
		// that sends the start again and again is not making any.
		progressed := f.off > f.high
		f.high = max(f.high, f.off)
		if err == nil {
			err = f.finish()
			if err == nil {
				return nil
			}
			if errors.Is(err, ErrDigest) && f.resumed {
				// The partial file may be what is wrong: once more, whole.
				if terr := f.truncate(); terr != nil {
					return terr
				}
				f.resumed = false
				continue
			}
			f.discardIfWrong(err)
			return err
		}
		if cerr := ctx.Err(); cerr != nil {
			return stopped(cerr, err, f.stats.Retries)
		}
		var p *permanent
		if errors.As(err, &p) {
			f.discardIfWrong(p.err)
			return p.err
		}
		if progressed {
			bo.Reset()
			failures = 0
		} else {
			failures++
		}
		if failures > f.o.MaxRetries {
			return fmt.Errorf("giving up after %d tries without progress: %w", failures, err)
		}
		f.stats.Retries++
		wait := time.Duration(rand.Int64N(int64(bo.NextBackOff()) + 1)) // full jitter
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return stopped(ctx.Err(), err, f.stats.Retries)
		case <-t.C:
		}
	}
}

// stopped is the error of a Fetch whose context ended: cerr, and, when
// the context ended while Fetch was retrying after a failure (a server
// that went away, a link that is down), that failure, so the caller learns
// why the file is still incomplete and not only that the time ran out.
func stopped(cerr, last error, retries int) error {
	if last == nil || errors.Is(last, cerr) {
		return cerr
	}
	var ue *url.Error
	if errors.As(last, &ue) {
		last = ue.Err // the URL is in Fetch's own message
	}
	return fmt.Errorf("%w (after %d retries; the last try: %v)", cerr, retries, last)
}

// discardIfWrong removes the partial file when err says its content is not
// the file's (wrong digest or size): nothing of it is worth resuming.
func (f *fetch) discardIfWrong(err error) {
	if !errors.Is(err, ErrDigest) && !errors.Is(err, ErrSize) {
		return
	}
	if f.file != nil {
		f.file.Close()
		f.file = nil
	}
	os.Remove(f.part)
}

// openPart opens (or creates) the partial file and hashes what it holds.
func (f *fetch) openPart() error {
	file, err := os.OpenFile(f.part, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return err
	}
	f.file = file
	st, err := file.Stat()
	if err != nil {
		return err
	}
	f.off = st.Size()
	if f.total >= 0 && f.off > f.total {
		// Longer than the file can be: not ours to continue.
		return f.truncate()
	}
	if f.off > 0 {
		if _, err := io.Copy(f.hash, io.NewSectionReader(file, 0, f.off)); err != nil {
			return err
		}
		f.resumed = true
	}
	f.stats.Resumed, f.high = f.off, f.off
	_, err = file.Seek(f.off, io.SeekStart)
	return err
}

func (f *fetch) truncate() error {
	if err := f.file.Truncate(0); err != nil {
		return err
	}
	if _, err := f.file.Seek(0, io.SeekStart); err != nil {
		return err
	}
	f.hash.Reset()
	f.off = 0
	return nil
}

// attempt sends one request and appends what it receives. It returns nil
// when the body ended where the file does.
// attempt sends one request and copies its body, cut (ErrStalled) when
// the server sends nothing for StallTimeout.
func (f *fetch) attempt(ctx context.Context) error {
	actx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	stall := fmt.Errorf("%w: no byte from the server for %s", ErrStalled, f.o.StallTimeout)
	f.watchdog = time.AfterFunc(f.o.StallTimeout, func() { cancel(stall) })
	defer f.watchdog.Stop()
	err := f.try(actx)
	if err != nil && ctx.Err() == nil && context.Cause(actx) == stall {
		return stall
	}
	return err
}

func (f *fetch) try(ctx context.Context) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, f.url, nil)
	if err != nil {
		return &permanent{err}
	}
	for k, vs := range f.o.Header {
		for _, v := range vs {
			req.Header.Add(k, v)
		}
	}
	if f.off > 0 {
		r := fmt.Sprintf("bytes=%d-", f.off)
		if f.total >= 0 {
			r += strconv.FormatInt(f.total-1, 10)
		}
		req.Header.Set("Range", r)
		if f.validator != "" {
			req.Header.Set("If-Range", f.validator)
		}
	}
	resp, err := f.client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()

	switch resp.StatusCode {
	case http.StatusOK:
		if f.off > 0 {
			// The whole file, not the range: start over.
			if err := f.truncate(); err != nil {
				return &permanent{err}
			}
			f.resumed = false
		}
		if resp.ContentLength >= 0 {
			if err := f.setTotal(resp.ContentLength); err != nil {
				return err
			}
		}
	case http.StatusPartialContent:
		start, total, err := parseContentRange(resp.Header.Get("Content-Range"))
		if err != nil {
			return err
		}
		if start != f.off {
			return fmt.Errorf("asked for bytes from %d, server sent from %d", f.off, start)
		}
		if total >= 0 {
			if err := f.setTotal(total); err != nil {
				return err
			}
		}
		f.resumed = true
	case http.StatusRequestedRangeNotSatisfiable:
		// Nothing lies beyond what we have: complete if the sizes agree.
		total := f.total
		if total < 0 {
			if _, t, err := parseContentRange(resp.Header.Get("Content-Range")); err == nil {
				total = t
			}
		}
		if total >= 0 && total == f.off {
			f.total = total
			return nil
		}
		// The partial file does not fit this resource: start over.
		if err := f.truncate(); err != nil {
			return &permanent{err}
		}
		return fmt.Errorf("server refused range from %d (%s)", f.off, resp.Status)
	default:
		se := &StatusError{URL: f.url, StatusCode: resp.StatusCode, Status: resp.Status}
		if se.Temporary() {
			return se
		}
		return &permanent{se}
	}
	if v := resp.Header.Get("ETag"); v != "" && !strings.HasPrefix(v, "W/") {
		f.validator = v
	} else if v := resp.Header.Get("Last-Modified"); v != "" {
		f.validator = v
	}
	return f.copyBody(ctx, resp.Body)
}

func (f *fetch) setTotal(n int64) error {
	if f.total >= 0 && n != f.total {
		return &permanent{fmt.Errorf("%w: server has %d bytes, expected %d", ErrSize, n, f.total)}
	}
	f.total = n
	return nil
}

func (f *fetch) copyBody(ctx context.Context, body io.Reader) error {
	buf := make([]byte, f.chunk)
	for {
		n, rerr := body.Read(buf)
		if n > 0 {
			f.watchdog.Reset(f.o.StallTimeout)
			if f.lim != nil {
				if err := f.lim.WaitN(ctx, n); err != nil {
					return err
				}
				f.watchdog.Reset(f.o.StallTimeout) // waiting for the limiter is not a stall
			}
			if f.total >= 0 && f.off+int64(n) > f.total {
				return &permanent{fmt.Errorf("%w: server sent more than %d bytes", ErrSize, f.total)}
			}
			if _, err := f.file.Write(buf[:n]); err != nil {
				return &permanent{err}
			}
			f.hash.Write(buf[:n])
			f.off += int64(n)
			f.stats.Bytes += int64(n)
			if f.o.Progress != nil {
				f.o.Progress(f.off, f.total)
			}
		}
		if rerr == io.EOF {
			if f.total >= 0 && f.off < f.total {
				return fmt.Errorf("connection ended at byte %d of %d: %w", f.off, f.total, io.ErrUnexpectedEOF)
			}
			return nil
		}
		if rerr != nil {
			return rerr
		}
	}
}

// finish checks size and digest and publishes the file.
func (f *fetch) finish() error {
	if f.o.Size > 0 && f.off != f.o.Size {
		return fmt.Errorf("%w: got %d bytes, expected %d", ErrSize, f.off, f.o.Size)
	}
	if f.o.Digest != "" {
		got := digest.NewDigest(f.o.Digest.Algorithm(), f.hash)
		if got != f.o.Digest {
			return fmt.Errorf("%w: got %s, expected %s", ErrDigest, got, f.o.Digest)
		}
	}
	if err := f.file.Sync(); err != nil {
		return err
	}
	if err := f.file.Close(); err != nil {
		f.file = nil
		return err
	}
	f.file = nil
	if err := atomicfile.Rename(f.part, f.dst); err != nil {
		return err
	}
	if f.o.Progress != nil {
		f.o.Progress(f.off, f.off)
	}
	return nil
}

// parseContentRange reads "bytes START-END/TOTAL" (TOTAL may be "*", then
// -1) and "bytes */TOTAL" (START is then -1).
func parseContentRange(s string) (start, total int64, err error) {
	bad := fmt.Errorf("malformed Content-Range %q", s)
	rest, ok := strings.CutPrefix(s, "bytes ")
	if !ok {
		return 0, 0, bad
	}
	rng, tot, ok := strings.Cut(rest, "/")
	if !ok {
		return 0, 0, bad
	}
	total = -1
	if tot != "*" {
		if total, err = strconv.ParseInt(tot, 10, 64); err != nil || total < 0 {
			return 0, 0, bad
		}
	}
	if rng == "*" {
		return -1, total, nil
	}
	a, b, ok := strings.Cut(rng, "-")
	if !ok {
		return 0, 0, bad
	}
	start, err1 := strconv.ParseInt(a, 10, 64)
	end, err2 := strconv.ParseInt(b, 10, 64)
	if err1 != nil || err2 != nil || start < 0 || end < start || (total >= 0 && end >= total) {
		return 0, 0, bad
	}
	return start, total, nil
}
