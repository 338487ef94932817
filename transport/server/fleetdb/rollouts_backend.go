package fleetdb

var (
	_ RolloutBackend = (*SQLite)(nil)
	_ RolloutBackend = (*Postgres)(nil)
)

// Rollouts is the rollout store of the database: writes on the store's
// writing pool (SQLite: its one connection), reads on its readers.
func (s *sqlStore) Rollouts() RolloutStore { return &SQLRollouts{W: s.w, R: s.r} }
