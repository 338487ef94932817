package gzrecipe

import (
	"compress/flate"
	"context"
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"io"
	"runtime"
	"sync"

	kflate "github.com/klauspost/compress/flate"
	"github.com/klauspost/pgzip"
)

// copyBufSize is the read size used to feed the compressors. The output of
// every supported mode is independent of the write sizes.
const copyBufSize = 256 << 10

// pgzipMemory bounds the input held in flight by pgzip's parallel blocks.
const pgzipMemory = 64 << 20

// Compress replays r: it streams tar into w as the gzip blob r describes.
// It stops early, returning the error, when ctx is done or w fails; it
// never leaves goroutines behind.
func (r Recipe) Compress(ctx context.Context, tar io.Reader, w io.Writer) error {
	if err := r.Validate(); err != nil {
		return err
	}
	hdr, err := r.Header.AppendBinary(nil)
	if err != nil {
		return fmt.Errorf("%w: %w", ErrBadRecipe, err)
	}
	// latch absorbs the first error of w so that pgzip's background writer
	// never sees one (it would leak a goroutine); feed stops at it instead.
	lw := &latchWriter{w: w}
	lw.Write(hdr)
	switch r.Compressor {
	case KlauspostPgzip:
		// pgzip writes its own 10-byte header (dropped: ours is already
		// out) and the same trailer as every gzip writer.
		pw, err := pgzip.NewWriterLevel(&skipWriter{w: lw, skip: 10}, r.Level)
		if err != nil {
			return fmt.Errorf("%w: %w", ErrBadRecipe, err)
		}
		if err := pw.SetConcurrency(r.BlockSize, pgzipBlocks(r.BlockSize)); err != nil {
			return fmt.Errorf("%w: %w", ErrBadRecipe, err)
		}
		_, ferr := feed(ctx, tar, pw, lw)
		cerr := pw.Close() // always: Close ends pgzip's goroutines
		return firstErr(ferr, cerr, lw.failed())
	case GoStdlib, KlauspostGzip:
		var fw io.WriteCloser
		if r.Compressor == GoStdlib {
			fw, err = flate.NewWriter(lw, r.Level)
		} else {
			fw, err = kflate.NewWriter(lw, r.Level)
		}
		if err != nil {
			return fmt.Errorf("%w: %w", ErrBadRecipe, err)
		}
		crc, ferr := feed(ctx, tar, fw, lw)
		if ferr != nil {
			return firstErr(ferr, lw.failed())
		}
		if err := fw.Close(); err != nil {
			return firstErr(lw.failed(), err)
		}
		var trailer [8]byte
		binary.LittleEndian.PutUint32(trailer[:4], crc.sum)
		binary.LittleEndian.PutUint32(trailer[4:], uint32(crc.n))
		lw.Write(trailer[:])
		return lw.failed()
	}
	return fmt.Errorf("%w: unknown compressor %q", ErrBadRecipe, r.Compressor)
}

// pgzipBlocks is how many blocks pgzip may compress in parallel.
func pgzipBlocks(blockSize int) int {
	n := min(runtime.GOMAXPROCS(0), 8, pgzipMemory/blockSize)
	return max(n, 1)
}

type checksum struct {
	sum uint32
	n   int64
}

// feed copies tar into cw, checking ctx and the latched output error
// between reads, and returns the CRC-32 and length of what it copied.
func feed(ctx context.Context, tar io.Reader, cw io.Writer, lw *latchWriter) (checksum, error) {
	var c checksum
	buf := make([]byte, copyBufSize)
	for {
		if err := ctx.Err(); err != nil {
			return c, err
		}
		if err := lw.failed(); err != nil {
			return c, err
		}
		n, rerr := tar.Read(buf)
		if n > 0 {
			c.sum = crc32.Update(c.sum, crc32.IEEETable, buf[:n])
			c.n += int64(n)
			if _, err := cw.Write(buf[:n]); err != nil {
				return c, firstErr(lw.failed(), err)
			}
		}
		if rerr == io.EOF {
			return c, nil
		}
		if rerr != nil {
			return c, fmt.Errorf("gzrecipe: read tar: %w", rerr)
		}
	}
}

func firstErr(errs ...error) error {
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}

// latchWriter passes writes to w until the first error, which it keeps in
// err. It never returns an error itself: pgzip leaks its writer goroutine
// when its output fails, so the compressors always see success and feed
// stops at the latched error instead (after at most one more read).
//
// pgzip writes from its own goroutine, so err is guarded.
type latchWriter struct {
	w   io.Writer
	mu  sync.Mutex
	err error
}

func (l *latchWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.err != nil {
		return len(p), nil
	}
	n, err := l.w.Write(p)
	if err == nil && n < len(p) {
		err = io.ErrShortWrite
	}
	l.err = err
	return len(p), nil
}

// failed returns the latched error.
func (l *latchWriter) failed() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.err
}

// skipWriter drops the first skip bytes written through it.
type skipWriter struct {
	w    io.Writer
	skip int
}

func (s *skipWriter) Write(p []byte) (int, error) {
	total := len(p)
	if s.skip > 0 {
		k := min(s.skip, len(p))
		s.skip -= k
		p = p[k:]
	}
	if len(p) == 0 {
		return total, nil
	}
	n, err := s.w.Write(p)
	if err != nil {
		return total - len(p) + n, err
	}
	return total, nil
}
