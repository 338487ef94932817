package agent

import (
	"fmt"
	"reflect"
	"strings"

	"gopkg.in/yaml.v3"
)

// unknownField finds the first key of the YAML document n that no field
// of type t has, and names it by its path as the other config errors do
// ("images[1] (cam).policy.intervall"), with the field meant when one is
// close. It returns "" when every key is known.
func unknownField(n *yaml.Node, t reflect.Type) string {
	if n.Kind == yaml.DocumentNode && len(n.Content) == 1 {
		n = n.Content[0]
	}
	return walkFields(n, t, "")
}

var unmarshalerType = reflect.TypeFor[yaml.Unmarshaler]()

func walkFields(n *yaml.Node, t reflect.Type, path string) string {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if reflect.PointerTo(t).Implements(unmarshalerType) {
		return "" // a value with its own syntax (Duration)
	}
	join := func(k string) string {
		if path == "" {
			return k
		}
		return path + "." + k
	}
	switch {
	case t.Kind() == reflect.Struct && n.Kind == yaml.MappingNode:
		fields := map[string]reflect.Type{}
		for i := range t.NumField() {
			f := t.Field(i)
			if name, _, _ := strings.Cut(f.Tag.Get("yaml"), ","); name != "" && name != "-" {
				fields[name] = f.Type
			}
		}
		for i := 0; i+1 < len(n.Content); i += 2 {
			key := n.Content[i].Value
			ft, ok := fields[key]
			if !ok {
				msg := fmt.Sprintf("%s: unknown field (line %d)", join(key), n.Content[i].Line)
				if near := nearest(key, fields); near != "" {
					msg += fmt.Sprintf("; did you mean %q?", near)
				}
				return msg
			}
			if m := walkFields(n.Content[i+1], ft, join(key)); m != "" {
				return m
			}
		}
	case t.Kind() == reflect.Slice && n.Kind == yaml.SequenceNode:
		for i, item := range n.Content {
			p := fmt.Sprintf("%s[%d]", path, i)
			if name := mapValue(item, "name"); name != "" {
				p += " (" + name + ")"
			}
			if m := walkFields(item, t.Elem(), p); m != "" {
				return m
			}
		}
	case t.Kind() == reflect.Map && n.Kind == yaml.MappingNode:
		for i := 0; i+1 < len(n.Content); i += 2 {
			if m := walkFields(n.Content[i+1], t.Elem(), join(n.Content[i].Value)); m != "" {
				return m
			}
		}
	}
	return ""
}

// mapValue is the scalar value of key in mapping n, or "".
func mapValue(n *yaml.Node, key string) string {
	if n.Kind != yaml.MappingNode {
		return ""
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		if n.Content[i].Value == key && n.Content[i+1].Kind == yaml.ScalarNode {
			return n.Content[i+1].Value
		}
	}
	return ""
}

// nearest returns the field name within two edits of key, if there is
// exactly one such closest name.
func nearest(key string, fields map[string]reflect.Type) string {
	best, bestD, ties := "", 3, 0
	for name := range fields {
		switch d := editDistance(key, name); {
		case d < bestD:
			best, bestD, ties = name, d, 0
		case d == bestD:
			ties++
		}
	}
	if ties > 0 {
		return ""
	}
	return best
}

// editDistance is the Levenshtein distance of a and b.
func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}
