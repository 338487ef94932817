package example

import (
	"hash/fnv"
	"math/rand/v2"
)

// seed is the fixed high half of every PCG seed; the low half is the FNV-64a
// hash of a label naming what is being generated, so each file's content
// depends only on its label and not on the order of generation.
const seed = 0x736b6966665f6578 // "skiff_ex"

// rng is a small deterministic generator. It uses only PCG's Uint64, whose
// algorithm is fixed, and derives everything else itself, so the output does
// not depend on how math/rand/v2 implements IntN or Float64.
type rng struct{ p *rand.PCG }

func newRNG(label string) *rng {
	h := fnv.New64a()
	h.Write([]byte(label))
	return &rng{p: rand.NewPCG(seed, h.Sum64())}
}

func (r *rng) u64() uint64 { return r.p.Uint64() }

// intn returns a value in [0, n). n must be positive.
func (r *rng) intn(n int) int {
	if n <= 0 {
		panic("example: intn with non-positive bound")
	}
	return int((r.u64() >> 1) % uint64(n))
}

// between returns a value in [lo, hi].
func (r *rng) between(lo, hi int) int { return lo + r.intn(hi-lo+1) }

// chance reports true with probability p.
func (r *rng) chance(p float64) bool {
	return float64(r.u64()>>11)/(1<<53) < p
}

func (r *rng) fill(b []byte) {
	for i := 0; i < len(b); i += 8 {
		v := r.u64()
		for j := 0; j < 8 && i+j < len(b); j++ {
			b[i+j] = byte(v >> (8 * j))
		}
	}
}

func (r *rng) pick(s []string) string { return s[r.intn(len(s))] }

// skewed returns a value in [0, n) biased towards small values, like the
// popularity of words or instructions.
func (r *rng) skewed(n int) int {
	a, b := r.intn(n), r.intn(n)
	if a < b {
		return a
	}
	return b
}
