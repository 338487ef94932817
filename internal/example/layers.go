package example

import (
	"fmt"
	"strings"
)

type sharedLib struct {
	pkg, soname, file string
	size              int
}

var baseLibs = []sharedLib{
	{"libc6", "libc.so.6", "libc.so.6", 1900 << 10},
	{"libc6", "libm.so.6", "libm.so.6", 900 << 10},
	{"libc6", "libresolv.so.2", "libresolv.so.2", 70 << 10},
	{"libgcc-s1", "libgcc_s.so.1", "libgcc_s.so.1", 120 << 10},
	{"zlib1g", "libz.so.1", "libz.so.1.2.13", 110 << 10},
	{"liblzma5", "liblzma.so.5", "liblzma.so.5.4.1", 170 << 10},
	{"libzstd1", "libzstd.so.1", "libzstd.so.1.5.4", 300 << 10},
	{"libbz2-1.0", "libbz2.so.1.0", "libbz2.so.1.0.4", 70 << 10},
	{"libpcre2-8-0", "libpcre2-8.so.0", "libpcre2-8.so.0.11.2", 260 << 10},
	{"libselinux1", "libselinux.so.1", "libselinux.so.1", 140 << 10},
	{"libtinfo6", "libtinfo.so.6", "libtinfo.so.6.4", 180 << 10},
	{"libacl1", "libacl.so.1", "libacl.so.1.1.2301", 30 << 10},
	{"libattr1", "libattr.so.1", "libattr.so.1.1.2501", 20 << 10},
	{"libcrypt1", "libcrypt.so.1", "libcrypt.so.1.1.0", 200 << 10},
	{"libidn12", "libidn.so.12", "libidn.so.12.6.3", 190 << 10},
}

var baseTools = []struct {
	name string
	size int
}{
	{"bash", 1200 << 10}, {"dash", 120 << 10}, {"ls", 140 << 10}, {"cat", 40 << 10},
	{"cp", 140 << 10}, {"mv", 130 << 10}, {"rm", 70 << 10}, {"ln", 70 << 10},
	{"mkdir", 90 << 10}, {"chmod", 65 << 10}, {"chown", 70 << 10}, {"date", 110 << 10},
	{"df", 95 << 10}, {"du", 150 << 10}, {"echo", 35 << 10}, {"env", 45 << 10},
	{"grep", 190 << 10}, {"sed", 120 << 10}, {"tar", 500 << 10}, {"gzip", 90 << 10},
	{"find", 220 << 10}, {"xargs", 65 << 10}, {"sort", 120 << 10}, {"uniq", 45 << 10},
	{"head", 45 << 10}, {"tail", 65 << 10}, {"wc", 50 << 10}, {"id", 45 << 10},
	{"mount", 60 << 10}, {"login", 60 << 10}, {"perl", 400 << 10},
}

var etcConfigs = []string{
	"adduser.conf", "deluser.conf", "debconf.conf", "e2scrub.conf", "gai.conf",
	"host.conf", "ld.so.conf", "login.defs", "mke2fs.conf", "nsswitch.conf",
	"pam.conf", "sysctl.conf", "xattr.conf", "default/useradd", "default/locale",
	"default/hwclock", "security/limits.conf", "security/access.conf",
	"security/namespace.conf", "security/pam_env.conf", "security/time.conf",
	"ssl/openssl.cnf", "apt/apt.conf.d/70debconf", "logrotate.d/dpkg",
	"dpkg/dpkg.cfg", "update-motd.d/10-uname",
}

// baseLayer is the Debian-like OS layer shared by both releases.
func baseLayer() *layer {
	l := newLayer(tBase)
	for _, d := range []string{"bin", "lib", "lib64", "sbin"} {
		l.symlink(d, "usr/"+d)
	}
	for _, d := range []string{"boot", "dev", "home", "media", "mnt", "opt", "proc", "run", "srv", "sys", "usr/local/bin", "var/cache/apt/archives", "var/lib/apt/lists", "var/log", "var/mail", "var/spool", "usr/lib64", "usr/sbin"} {
		l.dir(d, 0o755)
	}
	l.dir("tmp", 0o1777)
	l.dir("var/tmp", 0o1777)
	l.dir("root", 0o700)
	l.dir("etc/ssl/private", 0o700)
	l.file("root/.bashrc", 0o644, []byte(configFile(newRNG("root/.bashrc"), "~/.bashrc: executed by bash(1) for non-login shells.", 1)))
	l.file("root/.profile", 0o644, []byte("# ~/.profile: executed by Bourne-compatible login shells.\n\nif [ \"$BASH\" ]; then\n  if [ -f ~/.bashrc ]; then\n    . ~/.bashrc\n  fi\nfi\n\nmesg n 2> /dev/null || true\n"))

	// /etc
	var passwd, group strings.Builder
	for i, u := range []string{"root", "daemon", "bin", "sys", "sync", "games", "man", "lp", "mail", "news", "uucp", "proxy", "www-data", "backup", "list", "irc", "_apt", "nobody"} {
		uid := i
		if u == "nobody" {
			uid = 65534
		}
		fmt.Fprintf(&passwd, "%s:x:%d:%d:%s:/var/%s:/usr/sbin/nologin\n", u, uid, uid, capitalize(u), u)
		fmt.Fprintf(&group, "%s:x:%d:\n", u, uid)
	}
	l.file("etc/passwd", 0o644, []byte(passwd.String()))
	l.file("etc/group", 0o644, []byte(group.String()))
	sh := l.file("etc/shadow", 0o640, []byte(strings.ReplaceAll(passwd.String(), ":x:", ":*:19880:0:99999:7:::\n#")))
	sh.gid = 42
	l.file("etc/hostname", 0o644, []byte("localhost\n"))
	l.file("etc/hosts", 0o644, []byte("127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n"))
	l.file("etc/debian_version", 0o644, []byte("12.6\n"))
	l.file("usr/lib/os-release", 0o644, []byte("PRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\nNAME=\"Debian GNU/Linux\"\nVERSION_ID=\"12\"\nVERSION=\"12 (bookworm)\"\nVERSION_CODENAME=bookworm\nID=debian\nHOME_URL=\"https://www.debian.org/\"\n"))
	l.symlink("etc/os-release", "../usr/lib/os-release")
	l.file("etc/shells", 0o644, []byte("# /etc/shells: valid login shells\n/bin/sh\n/usr/bin/sh\n/bin/bash\n/usr/bin/bash\n/bin/dash\n/usr/bin/dash\n"))
	l.file("etc/ld.so.conf.d/x86_64-linux-gnu.conf", 0o644, []byte("# Multiarch support\n/usr/local/lib/x86_64-linux-gnu\n/lib/x86_64-linux-gnu\n/usr/lib/x86_64-linux-gnu\n"))
	l.file("etc/apt/sources.list.d/debian.sources", 0o644, []byte("Types: deb\nURIs: http://deb.debian.org/debian\nSuites: bookworm bookworm-updates\nComponents: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n\nTypes: deb\nURIs: http://deb.debian.org/debian-security\nSuites: bookworm-security\nComponents: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n"))
	for _, c := range etcConfigs {
		r := newRNG("etc/" + c)
		l.file("etc/"+c, 0o644, []byte(configFile(r, "/etc/"+c, r.between(1, 6))))
	}
	var services strings.Builder
	sr := newRNG("etc/services")
	for port := 1; port < 12000; port += 1 + sr.skewed(60) {
		fmt.Fprintf(&services, "%s\t\t%d/tcp\t\t\t# %s\n", identifier(sr, 1), port, strings.TrimSuffix(sentence(sr), "."))
	}
	l.file("etc/services", 0o644, []byte(services.String()))
	l.file("etc/ssl/certs/ca-certificates.crt", 0o644, certBundle(seq(0, 140)))

	// Programs and libraries.
	for _, t := range baseTools {
		if t.name == "perl" {
			continue
		}
		l.file("usr/bin/"+t.name, 0o755, elfFile("bin/"+t.name, t.size*5/8, true, t.name))
	}
	l.file("usr/bin/perl", 0o755, elfFile("bin/perl", 400<<10, true, "perl"))
	l.hardlink("usr/bin/perl5.36.0", "usr/bin/perl")
	l.symlink("usr/bin/sh", "dash")
	l.symlink("usr/bin/rbash", "bash")
	l.symlink("usr/bin/gunzip", "gzip")
	for _, s := range []string{"ldconfig", "nologin", "useradd", "groupadd", "pam_tally2"} {
		l.file("usr/sbin/"+s, 0o755, elfFile("sbin/"+s, 40<<10+len(s)*3000, true, s))
	}
	l.file("usr/lib64/ld-linux-x86-64.so.2", 0o755, elfFile("ld-linux", 210<<10, false, "_dl"))
	for _, lib := range baseLibs {
		l.file(libDir+"/"+lib.file, 0o644, elfFile("lib/"+lib.file, lib.size*5/8, false, strings.TrimPrefix(strings.SplitN(lib.soname, ".", 2)[0], "lib")))
		if lib.file != lib.soname {
			l.symlink(libDir+"/"+lib.soname, lib.file)
		}
	}

	// Documentation and package database.
	var pkgs []debPkg
	names := append(append([]string(nil), pkgNames...), "libidn12")
	for _, p := range names {
		r := newRNG("pkg/" + p)
		ver := fmt.Sprintf("%d.%d.%d-%d", r.between(0, 9), r.between(0, 40), r.between(0, 20), r.between(1, 5))
		pkgs = append(pkgs, debPkg{p, ver, "amd64", r.between(50, 8000), strings.TrimSuffix(sentence(r), ".")})
		l.file("usr/share/doc/"+p+"/copyright", 0o644, copyrightFile(p))
		if r.chance(0.3) {
			l.file("usr/share/doc/"+p+"/changelog.Debian", 0o644, changelog(p, ver, r.between(2, 8)))
		}
		l.file("var/lib/dpkg/info/"+p+".list", 0o644, []byte(fmt.Sprintf("/.\n/usr\n/usr/share\n/usr/share/doc\n/usr/share/doc/%s\n/usr/share/doc/%s/copyright\n", p, p)))
	}
	for _, lic := range licenses {
		l.file("usr/share/common-licenses/"+lic, 0o644, []byte(licenseText(lic)))
	}
	l.file("var/lib/dpkg/status", 0o644, dpkgStatus(pkgs))
	return l
}

// basePkgs is the package database of the base layer, which the runtime
// layer extends (apt rewrites the whole status file).
func basePkgs() []byte {
	return baseLayer().get("var/lib/dpkg/status").data
}

// runtimeLayers returns the runtime layer of both releases: libssl3 gets a
// point release, libfoo1 1.2.3 becomes 1.2.4 (renamed file), libjson-c5 is
// removed, libyaml-0-2 is added, and libidn12 of the base layer is purged
// (whiteouts).
func runtimeLayers(base *layer) (old, new *layer) {
	status := base.get("var/lib/dpkg/status").data
	old, new = newLayer(tRun1), newLayer(tRun2)

	ssl1, ssl2 := pointRelease("libssl.so.3", 320<<10, "SSL", "OpenSSL 3.0.13 30 Jan 2024")
	cr1, cr2 := pointRelease("libcrypto.so.3", 1300<<10, "CRYPTO", "OpenSSL 3.0.13 30 Jan 2024")
	foo1, foo2 := pointRelease("libfoo.so.1", 150<<10, "foo", "libfoo 1.2.4")
	sq := elfFile("lib/libsqlite3.so.0.8.6", 620<<10, false, "sqlite3")
	js := elfFile("lib/libjson-c.so.5.2.0", 60<<10, false, "json")
	yaml := elfFile("lib/libyaml-0.so.2.0.9", 140<<10, false, "yaml")

	for _, l := range []*layer{old, new} {
		l.file(libDir+"/libsqlite3.so.0.8.6", 0o644, sq).mtime = tRun1
		l.symlink(libDir+"/libsqlite3.so.0", "libsqlite3.so.0.8.6")
		l.file("usr/share/doc/libsqlite3-0/copyright", 0o644, copyrightFile("libsqlite3-0")).mtime = tRun1
		l.file("etc/ssl/openssl.cnf", 0o644, []byte(configFile(newRNG("openssl.cnf"), "OpenSSL example configuration file.", 6))).mtime = tRun1
	}
	old.file(libDir+"/libssl.so.3", 0o644, ssl1)
	old.file(libDir+"/libcrypto.so.3", 0o644, cr1)
	old.file(libDir+"/libfoo.so.1.2.3", 0o644, foo1)
	old.symlink(libDir+"/libfoo.so.1", "libfoo.so.1.2.3")
	old.file(libDir+"/libjson-c.so.5.2.0", 0o644, js)
	old.symlink(libDir+"/libjson-c.so.5", "libjson-c.so.5.2.0")
	old.file("usr/share/doc/libjson-c5/copyright", 0o644, copyrightFile("libjson-c5"))
	old.file("usr/share/doc/libssl3/changelog.Debian", 0o644, changelog("openssl", "3.0.11-1~deb12u2", 6))
	old.file("usr/share/doc/libfoo1/changelog.Debian", 0o644, changelog("libfoo", "1.2.3-1", 4))

	new.file(libDir+"/libssl.so.3", 0o644, ssl2)
	new.file(libDir+"/libcrypto.so.3", 0o644, cr2)
	new.file(libDir+"/libfoo.so.1.2.4", 0o644, foo2)
	new.symlink(libDir+"/libfoo.so.1", "libfoo.so.1.2.4")
	new.file(libDir+"/libyaml-0.so.2.0.9", 0o644, yaml)
	new.symlink(libDir+"/libyaml-0.so.2", "libyaml-0.so.2.0.9")
	new.file("usr/share/doc/libyaml-0-2/copyright", 0o644, copyrightFile("libyaml-0-2"))
	new.file("usr/share/doc/libssl3/changelog.Debian", 0o644, append(changelog("openssl", "3.0.13-1~deb12u1", 1), changelog("openssl", "3.0.11-1~deb12u2", 6)...))
	new.file("usr/share/doc/libfoo1/changelog.Debian", 0o644, append(changelog("libfoo", "1.2.4-1", 1), changelog("libfoo", "1.2.3-1", 4)...))
	new.whiteout(libDir + "/libidn.so.12.6.3")
	new.whiteout(libDir + "/libidn.so.12")
	new.whiteout("usr/share/doc/libidn12")
	new.whiteout("var/lib/dpkg/info/libidn12.list")

	oldPkgs := []debPkg{
		{"libssl3", "3.0.11-1~deb12u2", "amd64", 6200, "Secure Sockets Layer toolkit - shared libraries"},
		{"libsqlite3-0", "3.40.1-2", "amd64", 1700, "SQLite 3 shared library"},
		{"libfoo1", "1.2.3-1", "amd64", 320, "foo protocol library"},
		{"libjson-c5", "0.16-2", "amd64", 120, "JSON manipulation library - shared library"},
	}
	newPkgs := []debPkg{
		{"libssl3", "3.0.13-1~deb12u1", "amd64", 6210, "Secure Sockets Layer toolkit - shared libraries"},
		{"libsqlite3-0", "3.40.1-2", "amd64", 1700, "SQLite 3 shared library"},
		{"libfoo1", "1.2.4-1", "amd64", 324, "foo protocol library"},
		{"libyaml-0-2", "0.2.5-1", "amd64", 150, "Fast YAML 1.1 parser and emitter library"},
	}
	// The purge of libidn12 removes its stanza, the last one of the base.
	baseStatus := string(status)
	newBase := baseStatus[:strings.LastIndex(baseStatus, "Package: libidn12\n")]
	old.file("var/lib/dpkg/status", 0o644, append(append([]byte(nil), status...), dpkgStatus(oldPkgs)...))
	new.file("var/lib/dpkg/status", 0o644, append([]byte(newBase), dpkgStatus(newPkgs)...))
	old.file("var/lib/dpkg/status-old", 0o644, status)
	new.file("var/lib/dpkg/status-old", 0o644, append(append([]byte(nil), status...), dpkgStatus(oldPkgs)...))
	for _, l := range []*layer{old, new} {
		l.file("etc/ld.so.cache", 0o644, ldCache(l))
		l.dir("var/cache/ldconfig", 0o700)
	}
	return old, new
}

// ldCache builds an ld.so.cache-like table of the layer's libraries.
func ldCache(l *layer) []byte {
	var names []string
	for _, e := range l.entries {
		if strings.HasPrefix(e.path, libDir+"/") && strings.Contains(e.path, ".so") {
			names = append(names, e.path)
		}
	}
	out := []byte("glibc-ld.so.cache1.1")
	out = le.AppendUint32(out, uint32(len(names)))
	strOff := 32 + 24*len(names)
	var strs []byte
	for _, n := range names {
		out = le.AppendUint32(out, 0x303)
		out = le.AppendUint32(out, uint32(strOff+len(strs)))
		out = le.AppendUint32(out, uint32(strOff+len(strs)))
		out = le.AppendUint32(out, 0)
		out = le.AppendUint64(out, 0)
		strs = append(strs, "/"+n+"\x00"...)
	}
	return append(out, strs...)
}
