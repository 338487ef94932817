package fleetdb

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/skiff-dev/skiff/transport/api"
)

// sqlStore is the Store both backends share: the queries, over
// database/sql, in SQL that SQLite and PostgreSQL both accept ($N
// placeholders, ON CONFLICT upserts, TEXT and BIGINT). The backends only
// open and configure the connections.
type sqlStore struct {
	w *sql.DB // writes
	r *sql.DB // reads; may be w
}

var _ Store = (*sqlStore)(nil)

// Close closes the database.
func (s *sqlStore) Close() error {
	if s.r == s.w {
		return s.w.Close()
	}
	return errors.Join(s.r.Close(), s.w.Close())
}

// RecordCheckin implements Store.
func (s *sqlStore) RecordCheckin(ctx context.Context, c Checkin) error {
	_, err := s.w.ExecContext(ctx, `
INSERT INTO inventory (device, image, channel, config_digest, last_seen, agent_version, platform, labels)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
ON CONFLICT (device, image) DO UPDATE SET
    channel = excluded.channel,
    config_digest = excluded.config_digest,
    last_seen = excluded.last_seen,
    agent_version = excluded.agent_version,
    platform = excluded.platform,
    labels = excluded.labels
WHERE inventory.last_seen <= excluded.last_seen`,
		c.Device, c.Image, c.Channel, c.ConfigDigest, millis(c.Time), c.AgentVersion, c.Platform, encodeLabels(c.Labels))
	if err != nil {
		return fmt.Errorf("recording a check-in: %w", err)
	}
	return nil
}

// PruneReports implements Store.
func (s *sqlStore) PruneReports(ctx context.Context, before time.Time) (int64, error) {
	res, err := s.w.ExecContext(ctx, `DELETE FROM reports WHERE received < $1`, millis(before))
	if err != nil {
		return 0, fmt.Errorf("pruning reports: %w", err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return 0, fmt.Errorf("pruning reports: %w", err)
	}
	return n, nil
}

// AddReport implements Store.
func (s *sqlStore) AddReport(ctx context.Context, r api.Report, received time.Time) (bool, error) {
	tx, err := s.w.BeginTx(ctx, nil)
	if err != nil {
		return false, fmt.Errorf("storing a report: %w", err)
	}
	defer tx.Rollback()
	res, err := tx.ExecContext(ctx, `
INSERT INTO reports (id, device, channel, image, from_digest, to_digest, result, error, bytes, duration_ms, agent_version, platform, time, received)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)
ON CONFLICT (id) DO NOTHING`,
		r.ID, r.Device, r.Channel, r.Image, r.FromDigest, r.ToDigest, r.Result, r.Error, r.Bytes, r.DurationMS,
		r.AgentVersion, r.Platform, millis(r.Time), millis(received))
	if err != nil {
		return false, fmt.Errorf("storing a report: %w", err)
	}
	if n, err := res.RowsAffected(); err != nil || n == 0 {
		return false, err
	}
	if _, err := tx.ExecContext(ctx, `
INSERT INTO inventory (device, image, channel, agent_version, platform, report_id, report_result, report_to, report_error, report_time)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
ON CONFLICT (device, image) DO UPDATE SET
    report_id = excluded.report_id,
    report_result = excluded.report_result,
    report_to = excluded.report_to,
    report_error = excluded.report_error,
    report_time = excluded.report_time
WHERE inventory.report_time <= excluded.report_time`,
		r.Device, r.Image, r.Channel, r.AgentVersion, r.Platform, r.ID, r.Result, r.ToDigest, r.Error, millis(r.Time)); err != nil {
		return false, fmt.Errorf("storing a report: %w", err)
	}
	if err := tx.Commit(); err != nil {
		return false, fmt.Errorf("storing a report: %w", err)
	}
	return true, nil
}

// Devices implements Store.
func (s *sqlStore) Devices(ctx context.Context, f Filter) ([]api.Device, string, error) {
	limit := f.Limit
	if limit <= 0 {
		limit = DefaultLimit
	}
	limit = min(limit, MaxLimit)
	var conds []string
	var args []any
	add := func(cond string, v any) {
		args = append(args, v)
		conds = append(conds, strings.ReplaceAll(cond, "?", fmt.Sprintf("$%d", len(args))))
	}
	if f.Channel != "" {
		add("channel = ?", f.Channel)
	}
	if f.Image != "" {
		add("image = ?", f.Image)
	}
	if f.ConfigDigest != "" {
		add("config_digest = ?", f.ConfigDigest)
	}
	if f.Result != "" {
		add("report_result = ?", f.Result)
	}
	if !f.SeenBefore.IsZero() {
		add("last_seen < ?", f.SeenBefore.UnixMilli())
	}
	where := "1 = 1"
	if len(conds) > 0 {
		where = strings.Join(conds, " AND ")
	}
	page := append([]any{}, args...)
	page = append(page, f.After, limit+1)
	q := fmt.Sprintf(`
SELECT device, image, channel, config_digest, last_seen, agent_version, platform, labels,
       report_id, report_result, report_to, report_error, report_time
FROM inventory
WHERE %[1]s AND device IN (
    SELECT DISTINCT device FROM inventory WHERE %[1]s AND device > $%[2]d ORDER BY device LIMIT $%[3]d)
ORDER BY device, image`, where, len(args)+1, len(args)+2)
	rows, err := s.r.QueryContext(ctx, q, page...)
	if err != nil {
		return nil, "", fmt.Errorf("listing devices: %w", err)
	}
	defer rows.Close()
	var devs []api.Device
	for rows.Next() {
		var dev string
		var im api.DeviceImage
		var seen, rtime int64
		var rep api.LastReport
		var labels string
		if err := rows.Scan(&dev, &im.Image, &im.Channel, &im.ConfigDigest, &seen, &im.AgentVersion, &im.Platform, &labels,
			&rep.ID, &rep.Result, &rep.ToDigest, &rep.Error, &rtime); err != nil {
			return nil, "", fmt.Errorf("listing devices: %w", err)
		}
		im.LastSeen = fromMillis(seen)
		im.Labels = decodeLabels(labels)
		if rep.ID != "" {
			rep.Time = fromMillis(rtime)
			im.LastReport = &rep
		}
		if len(devs) == 0 || devs[len(devs)-1].ID != dev {
			devs = append(devs, api.Device{ID: dev})
		}
		d := &devs[len(devs)-1]
		d.Images = append(d.Images, im)
	}
	if err := rows.Err(); err != nil {
		return nil, "", fmt.Errorf("listing devices: %w", err)
	}
	next := ""
	if len(devs) > limit {
		devs = devs[:limit]
		next = devs[limit-1].ID
	}
	return devs, next, nil
}
