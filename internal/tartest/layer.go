package tartest

import (
	"archive/tar"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"path"
	"strings"
	"time"

	"github.com/skiff-dev/skiff/internal/counting"
)

// ErrBadSize is returned by Layer for a negative size.
var ErrBadSize = errors.New("tartest: bad layer size")

// layerGen holds the state of one Layer call.
type layerGen struct {
	rng     *rand.Rand
	tw      *tar.Writer
	cw      *counting.Writer
	dirs    map[string]bool
	dirList []string        // g.dirs in creation order
	seen    map[string]bool // every non-directory path
	regular []string        // regular files written so far, for hardlinks
	all     []string        // every path written so far, for symlink targets
	maxFile int64
	target  int64
	buf     []byte
}

var (
	layerTops = []string{"usr/bin", "usr/lib/x86_64-linux-gnu", "usr/share/doc", "usr/share/locale",
		"usr/lib/python3/dist-packages", "etc", "var/lib/dpkg/info", "opt/app/node_modules",
		"opt/app/lib", "usr/local/bin", "home/app/.cache", "usr/include"}
	syllables = strings.Fields("lib core net ssl xml json http zip gz log dev util conf app data " +
		"base tool kit cli srv api io os fs db crypto py node go rs web")
	exts = []string{"", ".so.1", ".py", ".js", ".json", ".h", ".txt", ".conf", ".gz", ".mo", ".md", ".list", ""}
)

// Layer writes a random realistic layer (many files, dirs, symlinks,
// hardlinks, sizes 0..maxFile, compressible and incompressible content) of
// roughly size bytes to w. Deterministic for seed.
//
// The tar stream is written by archive/tar (ustar, or PAX where a name
// needs it) and ends with the two-block end marker. Its length is within
// 10% of size for sizes of 8 KiB and more; smaller sizes give a small
// layer of at least the 1 KiB end marker. The largest file is size/5 bytes,
// at most 64 MiB. Content is generated while writing, so memory stays
// small whatever the size.
func Layer(w io.Writer, seed int64, size int64) error {
	if size < 0 {
		return fmt.Errorf("layer of %d bytes: %w", size, ErrBadSize)
	}
	cw := &counting.Writer{W: w}
	g := &layerGen{
		rng:     rand.New(rand.NewPCG(uint64(seed), 0x5eed1a7e)),
		tw:      tar.NewWriter(cw),
		cw:      cw,
		dirs:    map[string]bool{},
		seen:    map[string]bool{},
		maxFile: min(max(size/5, 4096), 64<<20),
		target:  size,
		buf:     make([]byte, 32<<10),
	}
	for g.budget() >= 2*blockSize {
		if err := g.entry(); err != nil {
			return err
		}
	}
	return g.tw.Close()
}

// name returns a random file name.
func (g *layerGen) name() string {
	n := 1 + g.rng.IntN(3)
	parts := make([]string, n)
	for i := range parts {
		parts[i] = syllables[g.rng.IntN(len(syllables))]
	}
	s := strings.Join(parts, "-")
	if g.rng.IntN(4) == 0 {
		s += fmt.Sprintf("%d.%d", g.rng.IntN(10), g.rng.IntN(30))
	}
	s += exts[g.rng.IntN(len(exts))]
	if !strings.ContainsAny(s, "-.") {
		s += ".d" // never the same as a directory component
	}
	return s
}

// dirFor returns a directory for a new entry: mostly one already made,
// sometimes a new one, and now and then a node_modules-style nest whose
// paths pass 100 bytes (only when there is room for PAX headers).
func (g *layerGen) dirFor(remaining int64) string {
	if len(g.dirList) > 0 && (g.rng.IntN(10) < 7 || remaining < 8<<10) {
		return g.dirList[g.rng.IntN(len(g.dirList))]
	}
	d := layerTops[g.rng.IntN(len(layerTops))]
	if remaining > 64<<10 && g.rng.IntN(25) == 0 {
		for i := 3 + g.rng.IntN(3); i > 0; i-- {
			d += "/node_modules/@" + g.name()
		}
		return d
	}
	for i := g.rng.IntN(3); i > 0; i-- {
		d += "/" + syllables[g.rng.IntN(len(syllables))]
	}
	return d
}

// mkdirAll writes directory entries for d and its missing parents.
func (g *layerGen) mkdirAll(d string) error {
	if d == "." || d == "" || g.dirs[d] {
		return nil
	}
	if err := g.mkdirAll(path.Dir(d)); err != nil {
		return err
	}
	g.dirs[d] = true
	g.dirList = append(g.dirList, d)
	return g.write(&tar.Header{Typeflag: tar.TypeDir, Name: d + "/", Mode: 0o755}, 0, 0)
}

func (g *layerGen) mtime() time.Time {
	return epoch.Add(time.Duration(g.rng.IntN(86400*30)) * time.Second)
}

// write writes hdr and, for a regular file, n content bytes of the given
// kind.
func (g *layerGen) write(hdr *tar.Header, n int64, kind int) error {
	hdr.ModTime = g.mtime()
	if hdr.Typeflag == tar.TypeReg {
		hdr.Size = n
	}
	if strings.HasPrefix(hdr.Name, "home/app/") {
		hdr.Uid, hdr.Gid, hdr.Uname, hdr.Gname = 1000, 1000, "app", "app"
	} else {
		hdr.Uname, hdr.Gname = "root", "root"
	}
	if err := g.tw.WriteHeader(hdr); err != nil {
		return fmt.Errorf("layer entry %s: %w", hdr.Name, err)
	}
	for n > 0 {
		chunk := g.buf[:min(n, int64(len(g.buf)))]
		g.fill(chunk, kind)
		if _, err := g.tw.Write(chunk); err != nil {
			return fmt.Errorf("layer entry %s: %w", hdr.Name, err)
		}
		n -= int64(len(chunk))
	}
	return nil
}

// Content kinds.
const (
	kindText   = iota // compressible text
	kindRandom        // incompressible
	kindBinary        // executable-like: zero runs, repeats and random runs
)

func (g *layerGen) fill(b []byte, kind int) {
	switch kind {
	case kindRandom:
		for i := 0; i < len(b); i += 8 {
			var w [8]byte
			binary.LittleEndian.PutUint64(w[:], g.rng.Uint64())
			copy(b[i:], w[:])
		}
	case kindBinary:
		for i := 0; i < len(b); {
			run := min(1+g.rng.IntN(256), len(b)-i)
			switch g.rng.IntN(3) {
			case 0:
				clear(b[i : i+run])
			case 1:
				v := byte(g.rng.Uint32())
				for j := i; j < i+run; j++ {
					b[j] = v + byte(j&7)
				}
			default:
				for j := i; j < i+run; j++ {
					b[j] = byte(g.rng.Uint32())
				}
			}
			i += run
		}
	default:
		for i := 0; i < len(b); {
			word := words[g.rng.IntN(len(words))]
			i += copy(b[i:], word)
			if i < len(b) {
				if g.rng.IntN(10) == 0 {
					b[i] = '\n'
				} else {
					b[i] = ' '
				}
				i++
			}
		}
	}
}

// fileSize returns a log-uniform size in [0, maxFile], with extra empty
// files and exact block multiples.
func (g *layerGen) fileSize() int64 {
	limit := min(g.maxFile, 64<<10) // most files are small
	switch g.rng.IntN(20) {
	case 0:
		return 0
	case 1:
		return int64(1+g.rng.IntN(8)) * blockSize
	case 2, 3, 4:
		limit = g.maxFile
	}
	return int64(math.Exp(g.rng.Float64()*math.Log(float64(limit+1)))) - 1
}

// entry writes one entry (and any parent directories) within the budget.
func (g *layerGen) entry() error {
	d := g.dirFor(g.budget())
	name := path.Join(d, g.name())
	if g.seen[name] {
		return nil // a name already used: skip, a realistic layer has no duplicates
	}
	g.seen[name] = true
	if err := g.mkdirAll(d); err != nil {
		return err
	}
	remaining := g.budget()
	if remaining < 2*blockSize {
		return nil
	}
	roll := g.rng.IntN(100)
	if remaining < 8<<10 {
		roll = 100 // near the end only regular files, whose size can fill the gap exactly
	}
	switch {
	case roll < 7 && len(g.all) > 0:
		target := g.all[g.rng.IntN(len(g.all))]
		if g.rng.IntN(2) == 0 {
			target = "/" + target
		} else {
			target = relTo(d, target)
		}
		g.all = append(g.all, name)
		return g.write(&tar.Header{Typeflag: tar.TypeSymlink, Name: name, Linkname: target, Mode: 0o777}, 0, 0)
	case roll < 11 && len(g.regular) > 0:
		target := g.regular[g.rng.IntN(len(g.regular))]
		g.all = append(g.all, name)
		return g.write(&tar.Header{Typeflag: tar.TypeLink, Name: name, Linkname: target, Mode: 0o644}, 0, 0)
	case roll < 12:
		return g.write(&tar.Header{Typeflag: tar.TypeReg, Name: path.Join(d, ".wh."+path.Base(name))}, 0, 0)
	}
	n := g.fileSize()
	// The header (three blocks with a PAX header for a long name) and the
	// padded data must fit.
	hdrCost := int64(blockSize)
	if len(name) > 100 {
		hdrCost = 3 * blockSize
	}
	room := max((remaining-hdrCost)&^(blockSize-1), 0)
	if n > room || room-n < 2*blockSize {
		n = room // last file: fill the layer up to its size
	}
	mode := int64(0o644)
	kind := g.rng.IntN(3)
	if strings.HasSuffix(d, "bin") {
		mode, kind = 0o755, kindBinary
	}
	g.regular = append(g.regular, name)
	g.all = append(g.all, name)
	return g.write(&tar.Header{Typeflag: tar.TypeReg, Name: name, Mode: mode}, n, kind)
}

// budget is the number of bytes left for entries before the end marker.
func (g *layerGen) budget() int64 {
	return g.target - g.cw.N - 2*blockSize
}

// relTo returns target relative to directory dir.
func relTo(dir, target string) string {
	up := strings.Count(dir, "/") + 1
	return strings.Repeat("../", up) + target
}
