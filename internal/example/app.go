package example

import (
	"fmt"
	"strings"
)

const appPrefix = "github.com/example/app"

// appRecompile is release 1.5.0 of the server binary: a rebuild with many
// small changes throughout.
var appRecompile = recompile{
	delFuncs: 0.012, addFuncs: 0.02, editFuncs: 0.06,
	editStrs: 0.03, addStrs: 0.01,
	comment: "Go cmd/compile go1.22.7",
}

func jsModule(label string) string {
	r := newRNG("js/" + label)
	var b strings.Builder
	fmt.Fprintf(&b, "/* %s */", label)
	for range r.between(5, 40) {
		fn := identifier(r, 2)
		args := []string{r.pick(words), r.pick(words)}
		fmt.Fprintf(&b, "function %s(%s,%s){", fn, args[0]+"$", args[1]+"$")
		for range r.between(1, 6) {
			switch r.intn(4) {
			case 0:
				fmt.Fprintf(&b, "if(%s$.%s===%d)return %q;", args[0], r.pick(words), r.intn(100), sentence(r))
			case 1:
				fmt.Fprintf(&b, "var %s=%s$[%q]||{};", r.pick(words), args[1], r.pick(words))
			case 2:
				fmt.Fprintf(&b, "%s$.%s(%s$,function(e){return e.%s});", args[0], r.pick(words), args[1], r.pick(words))
			default:
				fmt.Fprintf(&b, "fetch(\"/api/%s/\"+%s$).then(r=>r.json());", r.pick(words), args[0])
			}
		}
		b.WriteString("}")
	}
	b.WriteString("\n")
	return b.String()
}

// jsBundle concatenates modules; the release version changes some modules
// and adds others.
func jsBundle(name string, n int, release int) []byte {
	var b strings.Builder
	r := newRNG("jsbundle/" + name)
	for i := range n {
		label := fmt.Sprintf("%s/%d", name, i)
		if release == 2 && r.chance(0.08) {
			label += "/v2"
		}
		b.WriteString(jsModule(label))
		if release == 2 && r.chance(0.03) {
			b.WriteString(jsModule(fmt.Sprintf("%s/%d/new", name, i)))
		}
	}
	return []byte(b.String())
}

func cssFile(label string, rules int) []byte {
	r := newRNG("css/" + label)
	var b strings.Builder
	props := []string{"margin", "padding", "color", "background", "border", "display", "font-size", "line-height", "width", "max-width"}
	for range rules {
		fmt.Fprintf(&b, ".%s-%s {\n", r.pick(words), r.pick(words))
		for range r.between(1, 6) {
			fmt.Fprintf(&b, "  %s: %dpx;\n", r.pick(props), r.intn(64))
		}
		b.WriteString("}\n\n")
	}
	return []byte(b.String())
}

func htmlTemplate(label string) []byte {
	r := newRNG("html/" + label)
	var b strings.Builder
	fmt.Fprintf(&b, "{{define %q}}\n<!doctype html>\n<html lang=\"en\">\n<head>\n  <meta charset=\"utf-8\">\n  <title>{{.Title}} - %s</title>\n  <link rel=\"stylesheet\" href=\"/static/css/site.css\">\n</head>\n<body>\n", label, capitalize(r.pick(words)))
	for range r.between(5, 30) {
		fmt.Fprintf(&b, "  <div class=\"%s-%s\">\n    <p>%s</p>\n    {{if .%s}}<a href=\"/%s/{{.ID}}\">%s</a>{{end}}\n  </div>\n", r.pick(words), r.pick(words), sentence(r), capitalize(r.pick(words)), r.pick(words), capitalize(r.pick(words)))
	}
	b.WriteString("</body>\n</html>\n{{end}}\n")
	return []byte(b.String())
}

func sqlMigration(n int) []byte {
	r := newRNG(fmt.Sprintf("sql/%d", n))
	var b strings.Builder
	t := identifier(r, 2)
	fmt.Fprintf(&b, "-- migration %04d\nBEGIN;\nCREATE TABLE IF NOT EXISTS %s (\n  id BIGSERIAL PRIMARY KEY", n, t)
	for range r.between(2, 9) {
		fmt.Fprintf(&b, ",\n  %s %s", identifier(r, 1), r.pick([]string{"TEXT NOT NULL", "BIGINT", "BOOLEAN DEFAULT false", "TIMESTAMPTZ", "JSONB"}))
	}
	fmt.Fprintf(&b, "\n);\nCREATE INDEX %s_idx ON %s (%s);\nCOMMIT;\n", t, t, r.pick(words))
	return []byte(b.String())
}

func yamlConfig(release int) []byte {
	r := newRNG("app.yaml")
	var b strings.Builder
	b.WriteString("# example/app configuration\n")
	for s := range 8 {
		fmt.Fprintf(&b, "%s:\n", identifier(r, 1))
		for k := range r.between(3, 10) {
			v := configValue(r)
			if release == 2 && (s*31+k)%11 == 3 {
				v = configValue(newRNG(fmt.Sprintf("app.yaml/v2/%d/%d", s, k)))
			}
			fmt.Fprintf(&b, "  %s: %s\n", identifier(r, 2), v)
		}
	}
	if release == 2 {
		b.WriteString("tracing:\n  enabled: true\n  sample_rate: 0.05\n  exporter: otlp\n")
	}
	return []byte(b.String())
}

// appLayers returns the application layer of both releases.
func appLayers(base *layer) (old, new *layer) {
	old, new = newLayer(tApp1), newLayer(tApp2)
	bin := genProgram("app/server", 5<<20, true, styleGo, appPrefix)
	bin.strs[0].s = "example/app version 1.4.2 (commit 3f9c2ab)"
	bin2 := bin.mutate("app/server", recompile{
		delFuncs: appRecompile.delFuncs, addFuncs: appRecompile.addFuncs, editFuncs: appRecompile.editFuncs,
		editStrs: appRecompile.editStrs, addStrs: appRecompile.addStrs, comment: appRecompile.comment,
		replace: map[string]string{bin.strs[0].s: "example/app version 1.5.0 (commit 8d1e07f)"},
	})
	old.file("app/bin/server", 0o755, bin.encode())
	new.file("app/bin/server", 0o755, bin2.encode())

	logging := configFile(newRNG("logging.toml"), "logging", 4)
	old.file("app/config/logging.toml", 0o644, []byte(logging))
	new.file("app/config/logging.toml", 0o644, []byte(editText(newRNG("logging.toml/v2"), logging, 0.1)))
	old.file("app/config/app.yaml", 0o644, yamlConfig(1))
	new.file("app/config/app.yaml", 0o644, yamlConfig(2))
	old.file("app/VERSION", 0o644, []byte("1.4.2\n"))
	new.file("app/VERSION", 0o644, []byte("1.5.0\n"))

	for _, l := range []*layer{old, new} {
		l.file("app/LICENSE", 0o644, []byte(licenseText("Apache-2.0")))
		l.file("app/static/css/site.css", 0o644, cssFile("site", 400))
		l.file("app/static/js/vendor.4b1f9e.js", 0o644, jsBundle("vendor", 60, 1))
		l.file("app/static/fonts/inter-var.woff2", 0o644, opaque("inter", "wOF2", 110<<10))
		for i, size := range []int{48 << 10, 120 << 10, 9 << 10, 200 << 10} {
			l.file(fmt.Sprintf("app/static/img/photo-%d.png", i), 0o644, png(fmt.Sprintf("photo%d", i), size))
		}
		for _, t := range []string{"base", "login", "dashboard", "settings", "error", "list"} {
			data := htmlTemplate(t)
			if l == new && (t == "dashboard" || t == "settings") {
				data = []byte(editText(newRNG("html/v2/"+t), string(data), 0.08))
			}
			l.file("app/templates/"+t+".html", 0o644, data)
		}
		for i := 1; i <= 6; i++ {
			l.file(fmt.Sprintf("app/migrations/%04d.sql", i), 0o644, sqlMigration(i))
		}
	}
	old.file("app/static/js/app.7c2d01.js", 0o644, jsBundle("app", 50, 1))
	new.file("app/static/js/app.e93a4b.js", 0o644, jsBundle("app", 50, 2))
	// Moved unchanged to a new directory.
	logo := png("logo", 24<<10)
	old.file("app/static/img/logo.png", 0o644, logo)
	new.file("app/static/brand/logo.png", 0o644, logo)
	// New in release 2.
	new.file("app/migrations/0007.sql", 0o644, sqlMigration(7))
	// An older CA bundle becomes identical to the base layer's.
	old.file("app/certs/ca-bundle.crt", 0o644, certBundle(append(seq(0, 120), seq(140, 152)...)))
	new.file("app/certs/ca-bundle.crt", 0o644, base.get("etc/ssl/certs/ca-certificates.crt").data)
	return old, new
}
