package rollout

import (
	"crypto/sha256"
	"encoding/binary"
	"math"
)

// Bucket places a device in [0, 100) for one rollout: the first 8 bytes of
// sha256(salt || 0x00 || deviceID), read big-endian, as a fraction of 2^64
// (its top 53 bits, so the float64 is exact), times 100. The NUL keeps
// ("ab", "c") and ("a", "bc") apart. Every server computes the same bucket
// from the same salt and ID; the golden test pins the function.
//
// A percentage wave of P covers the devices whose bucket is below P, so a
// device in the 1% wave is in the 10% wave too, and a device's wave only
// depends on the salt: State uses its rollout ID (see the package doc).
func Bucket(salt, deviceID string) float64 {
	h := sha256.New()
	h.Write([]byte(salt))
	h.Write([]byte{0})
	h.Write([]byte(deviceID))
	var sum [sha256.Size]byte
	x := binary.BigEndian.Uint64(h.Sum(sum[:0])[:8])
	b := float64(x>>11) / (1 << 53) * 100
	if b >= 100 { // cannot happen with 53 bits, but keep the promise
		b = math.Nextafter(100, 0)
	}
	return b
}

// WaveOf returns the index (from 0) of the first wave of plan the device
// belongs to: a group wave whose labels the device has, or a percentage
// wave above the device's Bucket. It returns len(plan.Waves) if none does,
// which a valid plan (ending with 100%) never does. A device's labels come
// from its check-in.
//
// WaveOf uses the plan's percentages; State.WaveOf also honours the
// cutoffs Widen raised for MinDevices, and is what TargetFor uses.
func WaveOf(plan Plan, salt, deviceID string, labels map[string]string) int {
	return waveOf(plan.Waves, nil, salt, deviceID, labels)
}

// waveOf is WaveOf with per-wave cutoffs (nil: the percentages).
func waveOf(waves []Wave, cutoffs []float64, salt, deviceID string, labels map[string]string) int {
	b := -1.0
	for i, w := range waves {
		if w.IsGroup() {
			if w.matches(labels) {
				return i
			}
			continue
		}
		if b < 0 {
			b = Bucket(salt, deviceID)
		}
		c := w.Percent
		if i < len(cutoffs) && cutoffs[i] > c {
			c = cutoffs[i]
		}
		if b < c {
			return i
		}
	}
	return len(waves)
}
