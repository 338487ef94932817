package fleetdb

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/skiff-dev/skiff/transport/server/rollout"
)

// Sentinel errors of the rollout store.
var (
	// ErrNoRollout: no rollout has the ID (or none matches).
	ErrNoRollout = errors.New("no such rollout")
	// ErrActiveRollout: the track has a rollout that is running or
	// paused already; at most one per (channel, image).
	ErrActiveRollout = errors.New("a rollout of this track is running or paused")
	// ErrConflict: the rollout's rev moved since it was loaded (another
	// server or admin changed it): load it again.
	ErrConflict = errors.New("rollout changed concurrently")
	// ErrSettled: the rollout is final and its outcome written to the
	// targets; it changes no more.
	ErrSettled = errors.New("rollout settled")
)

// RolloutStore keeps staged rollouts (rollout.State, as JSON) and answers
// the fleet query their Tally needs. Every change is a compare-and-set on
// the state's Rev (see package rollout), so several servers can share one
// database.
type RolloutStore interface {
	// CreateRollout stores a new rollout; ErrActiveRollout if its track
	// has one running or paused.
	CreateRollout(ctx context.Context, s *rollout.State) error
	// GetRollout loads one rollout by ID (ErrNoRollout).
	GetRollout(ctx context.Context, id string) (*rollout.State, error)
	// ActiveRollout is the track's running or paused rollout
	// (ErrNoRollout if none).
	ActiveRollout(ctx context.Context, channel, image string) (*rollout.State, error)
	// GoverningRollout is the newest rollout of the track that is not
	// settled: running, paused, or final with its outcome not yet written
	// to the targets (ErrNoRollout if none).
	GoverningRollout(ctx context.Context, channel, image string) (*rollout.State, error)
	// ListRollouts lists the rollouts f selects, newest first.
	ListRollouts(ctx context.Context, f RolloutFilter) ([]*rollout.State, error)
	// UnsettledRollouts lists every rollout not settled, of every track.
	UnsettledRollouts(ctx context.Context) ([]*rollout.State, error)
	// UpdateRollout writes s if the stored rev is still oldRev
	// (ErrConflict otherwise, ErrNoRollout if there is no such row,
	// ErrSettled if the rollout is settled).
	UpdateRollout(ctx context.Context, s *rollout.State, oldRev int64) error
	// SettleRollout marks a final rollout settled: its outcome is in the
	// targets, and it no longer governs its track's check-ins.
	SettleRollout(ctx context.Context, id string) error
	// TrackDevices lists the inventory of (channel, image) for Tally:
	// each device's running config digest, labels, and the result of its
	// last report if that report was about target.
	TrackDevices(ctx context.Context, channel, image, target string) ([]rollout.Device, error)
}

// RolloutBackend is a Store that keeps rollouts too.
type RolloutBackend interface {
	Rollouts() RolloutStore
}

// RolloutFilter narrows ListRollouts; zero fields do not filter.
type RolloutFilter struct {
	Channel, Image string
	Status         rollout.Status
	// Limit is the most rollouts returned (default and at most 100).
	Limit int
}

// querier is what the rollout queries need of a database: *sql.DB and
// *sql.Tx have it.
type querier interface {
	ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error)
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
}

// SQLRollouts is a RolloutStore over any database/sql database migrated
// with this package's schema: W takes the writes, R the reads (the same
// pool, or SQLite's reader pool).
type SQLRollouts struct {
	W, R *sql.DB
	// Now is the clock of the updated column (default
	// time.Now).
	Now func() time.Time
}

var _ RolloutStore = (*SQLRollouts)(nil)

func (s *SQLRollouts) now() int64 {
	if s.Now != nil {
		return s.Now().UnixMilli()
	}
	return time.Now().UnixMilli()
}

const activeStatuses = `('running', 'paused')`

// CreateRollout implements RolloutStore: in one transaction it looks for
// a running or paused rollout of the track, then inserts; the partial
// unique index rollouts_one_active catches the race of two transactions
// that both looked before either inserted.
func (s *SQLRollouts) CreateRollout(ctx context.Context, st *rollout.State) error {
	if err := st.Validate(); err != nil {
		return err
	}
	if st.Status.Final() {
		return fmt.Errorf("creating rollout %s: status %s: %w", st.ID, st.Status, rollout.ErrInvalid)
	}
	b, err := json.Marshal(st)
	if err != nil {
		return err
	}
	tx, err := s.W.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("creating rollout %s: %w", st.ID, err)
	}
	defer tx.Rollback()
	if other, err := activeID(ctx, tx, st.Channel, st.Image); err != nil {
		return fmt.Errorf("creating rollout %s: %w", st.ID, err)
	} else if other != "" {
		return fmt.Errorf("%s/%s: rollout %s: %w", st.Channel, st.Image, other, ErrActiveRollout)
	}
	if _, err := tx.ExecContext(ctx, `
INSERT INTO rollouts (id, channel, image, status, rev, state, settled, created, updated)
VALUES ($1, $2, $3, $4, $5, $6, 0, $7, $8)`,
		st.ID, st.Channel, st.Image, string(st.Status), st.Rev, string(b), millis(st.Created), s.now()); err != nil {
		// Another writer's insert won the index, or the ID is taken.
		if other, qerr := activeID(ctx, s.R, st.Channel, st.Image); qerr == nil && other != "" {
			return fmt.Errorf("%s/%s: rollout %s: %w", st.Channel, st.Image, other, ErrActiveRollout)
		}
		return fmt.Errorf("creating rollout %s: %w", st.ID, err)
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("creating rollout %s: %w", st.ID, err)
	}
	return nil
}

func activeID(ctx context.Context, q querier, channel, image string) (string, error) {
	var id string
	err := q.QueryRowContext(ctx, `SELECT id FROM rollouts WHERE channel = $1 AND image = $2 AND status IN `+activeStatuses,
		channel, image).Scan(&id)
	if errors.Is(err, sql.ErrNoRows) {
		return "", nil
	}
	return id, err
}

// GetRollout implements RolloutStore.
func (s *SQLRollouts) GetRollout(ctx context.Context, id string) (*rollout.State, error) {
	return s.one(ctx, "rollout "+id, `SELECT state FROM rollouts WHERE id = $1`, id)
}

// ActiveRollout implements RolloutStore.
func (s *SQLRollouts) ActiveRollout(ctx context.Context, channel, image string) (*rollout.State, error) {
	return s.one(ctx, "active rollout of "+channel+"/"+image,
		`SELECT state FROM rollouts WHERE channel = $1 AND image = $2 AND status IN `+activeStatuses, channel, image)
}

// GoverningRollout implements RolloutStore.
func (s *SQLRollouts) GoverningRollout(ctx context.Context, channel, image string) (*rollout.State, error) {
	return s.one(ctx, "governing rollout of "+channel+"/"+image,
		`SELECT state FROM rollouts WHERE channel = $1 AND image = $2 AND settled = 0
 ORDER BY CASE WHEN status IN `+activeStatuses+` THEN 1 ELSE 0 END DESC, created DESC, id DESC LIMIT 1`, channel, image)
}

func (s *SQLRollouts) one(ctx context.Context, what, q string, args ...any) (*rollout.State, error) {
	var b string
	err := s.R.QueryRowContext(ctx, q, args...).Scan(&b)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("%s: %w", what, ErrNoRollout)
	}
	if err != nil {
		return nil, fmt.Errorf("loading %s: %w", what, err)
	}
	return decodeState(b)
}

func decodeState(b string) (*rollout.State, error) {
	var st rollout.State
	if err := json.Unmarshal([]byte(b), &st); err != nil {
		return nil, fmt.Errorf("stored rollout: %v: %w", err, rollout.ErrInvalid)
	}
	if err := st.Validate(); err != nil {
		return nil, fmt.Errorf("stored rollout: %w", err)
	}
	return &st, nil
}

// ListRollouts implements RolloutStore.
func (s *SQLRollouts) ListRollouts(ctx context.Context, f RolloutFilter) ([]*rollout.State, error) {
	var conds []string
	var args []any
	add := func(col string, v any) {
		args = append(args, v)
		conds = append(conds, fmt.Sprintf("%s = $%d", col, len(args)))
	}
	if f.Channel != "" {
		add("channel", f.Channel)
	}
	if f.Image != "" {
		add("image", f.Image)
	}
	if f.Status != "" {
		add("status", string(f.Status))
	}
	where := "1 = 1"
	if len(conds) > 0 {
		where = strings.Join(conds, " AND ")
	}
	limit := f.Limit
	if limit <= 0 || limit > 100 {
		limit = 100
	}
	args = append(args, limit)
	return s.many(ctx, fmt.Sprintf(`SELECT state FROM rollouts WHERE %s ORDER BY created DESC, id LIMIT $%d`, where, len(args)), args...)
}

// UnsettledRollouts implements RolloutStore.
func (s *SQLRollouts) UnsettledRollouts(ctx context.Context) ([]*rollout.State, error) {
	return s.many(ctx, `SELECT state FROM rollouts WHERE settled = 0 ORDER BY created, id`)
}

func (s *SQLRollouts) many(ctx context.Context, q string, args ...any) ([]*rollout.State, error) {
	rows, err := s.R.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, fmt.Errorf("listing rollouts: %w", err)
	}
	defer rows.Close()
	var out []*rollout.State
	for rows.Next() {
		var b string
		if err := rows.Scan(&b); err != nil {
			return nil, fmt.Errorf("listing rollouts: %w", err)
		}
		st, err := decodeState(b)
		if err != nil {
			return nil, err
		}
		out = append(out, st)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("listing rollouts: %w", err)
	}
	return out, nil
}

// UpdateRollout implements RolloutStore:
//
//	UPDATE rollouts SET state = $new, rev = $new_rev, … WHERE id = $id AND rev = $old_rev
func (s *SQLRollouts) UpdateRollout(ctx context.Context, st *rollout.State, oldRev int64) error {
	if err := st.Validate(); err != nil {
		return err
	}
	b, err := json.Marshal(st)
	if err != nil {
		return err
	}
	res, err := s.W.ExecContext(ctx, `
UPDATE rollouts SET state = $1, rev = $2, status = $3, updated = $4
 WHERE id = $5 AND rev = $6 AND settled = 0`,
		string(b), st.Rev, string(st.Status), s.now(), st.ID, oldRev)
	if err != nil {
		return fmt.Errorf("updating rollout %s: %w", st.ID, err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return fmt.Errorf("updating rollout %s: %w", st.ID, err)
	}
	if n == 1 {
		return nil
	}
	var rev, settled int64
	switch err := s.W.QueryRowContext(ctx, `SELECT rev, settled FROM rollouts WHERE id = $1`, st.ID).Scan(&rev, &settled); {
	case errors.Is(err, sql.ErrNoRows):
		return fmt.Errorf("rollout %s: %w", st.ID, ErrNoRollout)
	case err != nil:
		return fmt.Errorf("updating rollout %s: %w", st.ID, err)
	case settled != 0:
		return fmt.Errorf("rollout %s: %w", st.ID, ErrSettled)
	}
	return fmt.Errorf("rollout %s: rev %d loaded, %d stored: %w", st.ID, oldRev, rev, ErrConflict)
}

// SettleRollout implements RolloutStore; settling a settled rollout
// changes nothing, and a rollout that is not final is refused.
func (s *SQLRollouts) SettleRollout(ctx context.Context, id string) error {
	res, err := s.W.ExecContext(ctx, `UPDATE rollouts SET settled = 1, updated = $1 WHERE id = $2 AND status IN ('completed', 'aborted')`,
		s.now(), id)
	if err != nil {
		return fmt.Errorf("settling rollout %s: %w", id, err)
	}
	if n, err := res.RowsAffected(); err != nil {
		return fmt.Errorf("settling rollout %s: %w", id, err)
	} else if n == 0 {
		return fmt.Errorf("settling rollout %s: not a final rollout: %w", id, ErrNoRollout)
	}
	return nil
}

// TrackDevices implements RolloutStore.
func (s *SQLRollouts) TrackDevices(ctx context.Context, channel, image, target string) ([]rollout.Device, error) {
	rows, err := s.R.QueryContext(ctx, `
SELECT device, config_digest, labels, CASE WHEN report_to = $3 THEN report_result ELSE '' END
FROM inventory WHERE channel = $1 AND image = $2 ORDER BY device`, channel, image, target)
	if err != nil {
		return nil, fmt.Errorf("listing the devices of %s/%s: %w", channel, image, err)
	}
	defer rows.Close()
	var out []rollout.Device
	for rows.Next() {
		var d rollout.Device
		var labels, result string
		if err := rows.Scan(&d.ID, &d.Running, &labels, &result); err != nil {
			return nil, fmt.Errorf("listing the devices of %s/%s: %w", channel, image, err)
		}
		d.Labels = decodeLabels(labels)
		d.Result = rollout.Result(result)
		out = append(out, d)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("listing the devices of %s/%s: %w", channel, image, err)
	}
	return out, nil
}

// encodeLabels is the labels column of a check-in: a JSON object with
// sorted keys, ” for none.
func encodeLabels(l map[string]string) string {
	if len(l) == 0 {
		return ""
	}
	b, err := json.Marshal(l) // sorts the keys
	if err != nil {
		return ""
	}
	return string(b)
}

// decodeLabels reads the labels column; what does not parse is no labels.
func decodeLabels(s string) map[string]string {
	if s == "" {
		return nil
	}
	var l map[string]string
	if json.Unmarshal([]byte(s), &l) != nil || len(l) == 0 {
		return nil
	}
	return l
}
