// Package bench measures skiff against the usual alternatives: corpus
// generation from real software, baselines, and the report (table, JSON,
// chart).
package bench
