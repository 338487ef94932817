// Package atomicfile writes files so that a reader, a crash or a power cut
// sees either the old content or the new one, never a part: the content
// goes to a temporary file beside the target, is fsynced, renamed over the
// target, and the directory is fsynced so the rename itself is durable.
package atomicfile
