package rollout

// MaxLabels is the most labels a device may have.
const MaxLabels = 32

// ValidLabel reports whether key=value is a label a group wave can
// select: a key of 1-128 of [A-Za-z0-9._/-] starting alphanumeric, a value
// of 1-128 of [A-Za-z0-9._:-], as ParsePlan accepts them.
func ValidLabel(key, value string) bool { return validKey(key) && validValue(value) }
