package example

import (
	"fmt"
	"strings"
)

// words is the vocabulary of every generated text: configs, docs, strings
// inside binaries. Frequent words come first (see rng.skewed).
var words = strings.Fields(`
the of and to a in is for that with on as be by this are or it from at not
file system user default value set if when which can all will use an may
each must no any only new should one other used same this these path also
data name list more time such option see before after where than into
server client config service network cache buffer memory process thread
module package library version release update install remove error warning
debug trace level output input stream socket address port host domain
certificate key signature hash digest checksum archive image layer store
request response header body length offset size count limit timeout retry
queue worker handler callback event signal lock mutex channel context
allocate free open close read write seek flush sync mount device driver
kernel interrupt page block sector inode directory symlink owner group
permission mode access policy security audit log message format string
integer pointer array table record field entry index node tree graph edge
parse encode decode compress expand verify validate resolve lookup query
start stop restart reload enable disable status health check probe metric
user session token password credential account role scope grant deny
local remote global shared private public internal external primary
standard extended minimal maximal initial final current previous next
debian stable testing unstable security updates main contrib non-free
copyright license software warranty permission distribution source binary
free redistribute modify terms conditions general public version later
`)

var pkgNames = strings.Fields(`
base-files bash coreutils dash debconf debian-archive-keyring diffutils
findutils gcc-12-base grep gzip hostname init-system-helpers libacl1
libattr1 libaudit1 libblkid1 libbz2-1.0 libc-bin libc6 libcap-ng0
libcap2 libcrypt1 libdb5.3 libgcc-s1 libgmp10 liblz4-1 liblzma5
libmd0 libpam0g libpcre2-8-0 libselinux1 libsmartcols1 libstdc++6
libsystemd0 libtinfo6 libudev1 libuuid1 libzstd1 login mawk mount
ncurses-base passwd perl-base sed sysvinit-utils tar tzdata util-linux
zlib1g
`)

func capitalize(s string) string {
	if s == "" {
		return s
	}
	return strings.ToUpper(s[:1]) + s[1:]
}

func sentence(r *rng) string {
	n := r.between(5, 15)
	ws := make([]string, n)
	for i := range ws {
		ws[i] = words[r.skewed(len(words))]
	}
	if n > 8 && r.chance(0.4) {
		ws[n/2] += ","
	}
	return capitalize(strings.Join(ws, " ")) + "."
}

// paragraph returns sentences wrapped at width columns, each line prefixed.
func paragraph(r *rng, prefix string, width int) string {
	var b strings.Builder
	line := prefix
	for range r.between(2, 6) {
		for _, w := range strings.Fields(sentence(r)) {
			if len(line)+len(w)+1 > width && len(line) > len(prefix) {
				b.WriteString(strings.TrimRight(line, " ") + "\n")
				line = prefix
			}
			line += w + " "
		}
	}
	b.WriteString(strings.TrimRight(line, " ") + "\n")
	return b.String()
}

// identifier returns a snake_case name of n words.
func identifier(r *rng, n int) string {
	ws := make([]string, n)
	for i := range ws {
		ws[i] = words[r.skewed(len(words))]
	}
	return strings.Join(ws, "_")
}

// configValue returns a plausible value for a config key.
func configValue(r *rng) string {
	switch r.intn(6) {
	case 0:
		return fmt.Sprint(r.between(0, 100))
	case 1:
		return fmt.Sprint(r.between(1, 64) * 1024)
	case 2:
		if r.chance(0.5) {
			return "yes"
		}
		return "no"
	case 3:
		return "/" + strings.Join([]string{r.pick(words), r.pick(words), r.pick(words)}, "/")
	case 4:
		return words[r.skewed(len(words))]
	default:
		return fmt.Sprintf("%q", sentence(r))
	}
}

// configFile generates an INI-like config with comments. Lines of key =
// value are what later versions edit.
func configFile(r *rng, title string, sections int) string {
	var b strings.Builder
	fmt.Fprintf(&b, "# %s\n#\n", title)
	b.WriteString(paragraph(r, "# ", 72))
	b.WriteString("\n")
	for range sections {
		fmt.Fprintf(&b, "[%s]\n", identifier(r, r.between(1, 2)))
		for range r.between(3, 12) {
			if r.chance(0.3) {
				b.WriteString(paragraph(r, "# ", 72))
			}
			key := identifier(r, r.between(1, 3))
			if r.chance(0.2) {
				b.WriteString("#")
			}
			fmt.Fprintf(&b, "%s = %s\n", key, configValue(r))
		}
		b.WriteString("\n")
	}
	return b.String()
}

// editText changes a text file the way a new upstream version does: a few
// lines changed, a few added, a few removed.
func editText(r *rng, text string, rate float64) string {
	lines := strings.SplitAfter(text, "\n")
	out := make([]string, 0, len(lines)+8)
	for _, l := range lines {
		switch {
		case l == "":
			continue
		case r.chance(rate / 3):
			// removed
		case r.chance(rate):
			if k, _, ok := strings.Cut(l, " = "); ok {
				out = append(out, k+" = "+configValue(r)+"\n")
			} else {
				out = append(out, paragraph(r, "# ", 72))
			}
		case r.chance(rate / 3):
			out = append(out, l, identifier(r, 2)+" = "+configValue(r)+"\n")
		default:
			out = append(out, l)
		}
	}
	return strings.Join(out, "")
}
