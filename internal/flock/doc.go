// Package flock takes exclusive advisory locks (flock(2)) that processes
// sharing a directory use to take turns: the agents of one device on an
// image, writers of one OCI layout, servers publishing on one state
// directory. Locks belong to the open file, so two holders in one process
// exclude each other too, and the kernel drops a lock when its holder
// dies, even by SIGKILL. Where there is no flock, locking does nothing.
package flock
