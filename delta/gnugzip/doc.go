// Package gnugzip re-creates, byte for byte, the gzip files that GNU gzip
// 1.12 (Debian bookworm's /usr/bin/gzip) writes, so a delta can carry the
// decompressed text of a .gz file and the device can compress it again to
// the exact original bytes.
//
// Debian packages ship their man pages and changelogs as .gz files made by
// dh_compress, which runs gzip -9n. Those are not zlib's output: gzip has
// its own deflate, and this package reimplements it.
//
// What is reproduced, levels 1..9 (gzip -1 .. -9):
//
//   - the match finder: a 64 KiB window sliding by 32 KiB once strstart
//     reaches WSIZE+MAX_DIST, hash chains (15 bits, shift 5), the
//     configuration table (good/lazy/nice/chain per level), deflate_fast
//     for levels 1-3 and lazy evaluation for 4-9, the TOO_FAR rule for
//     3-byte matches, matches clamped to the lookahead, no match search
//     within MIN_LOOKAHEAD of the window end, and gzip's comparison order
//     (including that it never compares the third byte and reads up to 258
//     bytes past the end of input, where the window still holds data from
//     before the last slide except for the two bytes gzip zeroes at end of
//     file);
//   - the block splitting: 32767 symbols or 32768 distances per block, and
//     at levels above 2 the "is it profitable to stop here" estimate every
//     4096 symbols;
//   - the block encoding: Huffman trees built with gzip's heap and its
//     depth tie-break, its bit-length overflow fix, its bit-length tree and
//     run-length coding of the trees, and the choice between a stored,
//     static or dynamic block (stored when stored_len+4 <= the smaller of
//     the other two, static when it is not larger than dynamic). gzip's
//     "whole file stored" case is compiled out of gzip (seekable() is 0), so
//     it does not exist here either.
//
// The header is not generated: Compress writes the caller's header bytes
// verbatim, so MTIME, FNAME, XFL and OS come from the original file. The
// trailer is CRC-32 and the size modulo 2^32.
//
// gzip reads a regular file with read(2), which fills each request except
// at the end of file. Writer behaves as if it did, whatever the sizes of the
// writes it receives; its output is therefore what gzip gives for a file.
// (gzip reading a pipe can get short reads; that case is not modelled.)
//
// What is not reproduced, and makes Detect return ErrNotReproducible:
// files from zlib (gzip -c via other tools, Python, minigzip), pigz
// (its own blocks and zlib's deflate), zopfli, 7-Zip, busybox gzip,
// Go's compress/gzip, klauspost's or other libraries; GNU gzip with
// --rsyncable; GNU gzip versions whose deflate differs from 1.12 (the
// algorithm has been stable for decades, but no other version was
// checked); several members or trailing bytes; and FHCRC. One more corner:
// when gzip compresses several files in one process (gzip -9n a b c, as
// dh_compress does), the window is not cleared between files, and a match
// at the very end of a small file can depend on the previous file's bytes.
// (checked: the second member of gzip -9n -c a b can differ from gzip -9n
// -c b). Such a file is simply not detected; Detect never returns a recipe that
// does not rebuild the input, because it compares the whole output.
//
// Memory: a Writer holds about 400 KiB whatever the input size; Detect and
// NewContentReader stream from an io.ReaderAt and hold buffers only.
package gnugzip
