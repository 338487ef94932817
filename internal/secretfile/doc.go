// Package secretfile tells whether a file holding a secret (a token, a
// private key) is open to other users of the machine: any permission bit
// for its group or for others. skiff serve and the agent warn about such
// token files and refuse such TLS private keys; this is their one test of
// it.
package secretfile
