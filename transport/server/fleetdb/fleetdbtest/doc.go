// Package fleetdbtest is the conformance suite every fleetdb.Store
// backend runs: report idempotency, inventory upserts (a late check-in or
// an older report changes nothing), every filter and the pages, and
// concurrent writers. PostgresDSN gives a test a schema of its own in
// the PostgreSQL database $SKIFF_POSTGRES names (skipping it without
// one), for the integration tests of the PostgreSQL backend and of
// servers on it.
package fleetdbtest
