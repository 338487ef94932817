//go:build !linux

package bench

import "errors"

const spawnEnv = "SKIFF_BENCH_SPAWN"

// spawnSupported: only Linux needs (and has) the wrapper.
const spawnSupported = false

// MaybeSpawn does nothing here: only Linux counts the memory a process had
// before exec in its ru_maxrss, so children are measured directly.
func MaybeSpawn() {}

func parseSpawnReport([]byte) (Usage, error) {
	return Usage{}, errors.New("no bench wrapper on this OS")
}
