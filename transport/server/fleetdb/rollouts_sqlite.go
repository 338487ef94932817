package fleetdb

var _ RolloutBackend = (*SQLite)(nil)

// Rollouts is the rollout store of the SQLite database: writes on its one
// writing connection, reads on its reader pool.
func (s *SQLite) Rollouts() RolloutStore { return &SQLRollouts{W: s.w, R: s.r} }
