// Package delta plans, writes and applies skiff deltas: for every target
// layer, its skeleton plus, for each file payload the base image lacks, one
// operation (copy, bsdiff, zstd with the base file as dictionary, plain zstd).
// The byte format is specified in FORMAT.md beside this file.
package delta
