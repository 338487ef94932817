// Package fleetdbtest is the conformance suite every fleetdb.Store
// backend runs: report idempotency, inventory upserts (a late check-in or
// an older report changes nothing), every filter and the pages.
package fleetdbtest
