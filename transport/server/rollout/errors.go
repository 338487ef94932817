package rollout

import "errors"

// Sentinel errors; every error of this package wraps one of them.
var (
	// ErrPlan: a plan that ParsePlan or Validate refuses.
	ErrPlan = errors.New("invalid rollout plan")
	// ErrTransition: a change the rollout's status does not allow, such
	// as resuming a completed rollout or aborting an aborted one.
	ErrTransition = errors.New("invalid rollout transition")
	// ErrInvalid: a malformed argument (an empty device ID, a config
	// digest that is not sha256:<64 hex>) or a malformed State.
	ErrInvalid = errors.New("invalid rollout argument")
	// ErrNotPinned: Unpin of a device that has no pin.
	ErrNotPinned = errors.New("device not pinned")
)
