// Package exefilter is a reversible transform of x86-64 machine code that
// makes binary diffs smaller (placeholder doc, rewritten below).
package exefilter
