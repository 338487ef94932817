//go:build !skiff_device

package fleetdb

import _ "modernc.org/sqlite" // the "sqlite" database/sql driver, pure Go

// sqliteDriver is the database/sql driver OpenSQLite uses.
const sqliteDriver = "sqlite"
