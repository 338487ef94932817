//go:build skiff_device

package fleetdb

// sqliteDriver is "" in a device build (-tags skiff_device): the agent
// needs no database, and the SQLite driver would cost the device binary
// 6 MB and its every run 3 MB of memory.
const sqliteDriver = ""
