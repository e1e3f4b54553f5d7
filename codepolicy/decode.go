package codepolicy

import (
	"fmt"
	"reflect"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"
)

// The YAML decoder. It walks yaml.v3's node tree into the exported structs,
// driven by their yaml tags, so that every error names its key path
// (revocations[2].serial) and line, unknown keys are errors, and scalars are
// taken as written (a serial such as 0123 stays text).

var timeType = reflect.TypeOf(time.Time{})

// decodeNode fills v (a pointer to a struct) from n.
func decodeNode(n *yaml.Node, v any) error {
	return decodeValue(n, reflect.ValueOf(v).Elem(), "")
}

func nodeErr(n *yaml.Node, path, format string, args ...any) error {
	return &ParseError{Line: n.Line, Key: path, Msg: fmt.Sprintf(format, args...)}
}

func kindName(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	case yaml.ScalarNode:
		return "a scalar"
	}
	return "an unsupported YAML node"
}

func isNull(n *yaml.Node) bool {
	return n.Kind == yaml.ScalarNode && n.Tag == "!!null"
}

func joinPath(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

// yamlFields returns the yaml key → field index map of a struct type.
func yamlFields(t reflect.Type) (map[string]int, []string) {
	m := map[string]int{}
	var keys []string
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		tag := f.Tag.Get("yaml")
		if !f.IsExported() || tag == "-" || tag == "" {
			continue
		}
		name, _, _ := strings.Cut(tag, ",")
		m[name] = i
		keys = append(keys, name)
	}
	return m, keys
}

func decodeValue(n *yaml.Node, v reflect.Value, path string) error {
	for n.Kind == yaml.AliasNode {
		n = n.Alias
	}
	switch {
	case v.Kind() == reflect.Struct && v.Type() != timeType:
		if isNull(n) {
			return nil
		}
		if n.Kind != yaml.MappingNode {
			return nodeErr(n, path, "expected a mapping, found %s", kindName(n))
		}
		fields, keys := yamlFields(v.Type())
		seen := map[string]int{}
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, val := n.Content[i], n.Content[i+1]
			if k.Kind != yaml.ScalarNode {
				return nodeErr(k, path, "keys must be plain strings")
			}
			kp := joinPath(path, k.Value)
			idx, ok := fields[k.Value]
			if !ok {
				where := "at the top level"
				if path != "" {
					where = "in " + path
				}
				return nodeErr(k, kp, "unknown key %q %s (known keys: %s)", k.Value, where, strings.Join(keys, ", "))
			}
			if line, dup := seen[k.Value]; dup {
				return nodeErr(k, kp, "key %q repeated (first at line %d)", k.Value, line)
			}
			seen[k.Value] = k.Line
			if err := decodeValue(val, v.Field(idx), kp); err != nil {
				return err
			}
		}
		return nil
	case v.Kind() == reflect.Slice:
		if isNull(n) {
			v.Set(reflect.Zero(v.Type()))
			return nil
		}
		if n.Kind != yaml.SequenceNode {
			return nodeErr(n, path, "expected a list, found %s", kindName(n))
		}
		s := reflect.MakeSlice(v.Type(), len(n.Content), len(n.Content))
		for i, item := range n.Content {
			if err := decodeValue(item, s.Index(i), fmt.Sprintf("%s[%d]", path, i)); err != nil {
				return err
			}
		}
		v.Set(s)
		return nil
	case v.Kind() == reflect.Pointer && v.Type().Elem() == timeType:
		if isNull(n) {
			v.Set(reflect.Zero(v.Type()))
			return nil
		}
		if n.Kind != yaml.ScalarNode {
			return nodeErr(n, path, "expected a date-time, found %s", kindName(n))
		}
		t, err := parseTime(n.Value)
		if err != nil {
			return nodeErr(n, path, "%v", err)
		}
		v.Set(reflect.ValueOf(&t))
		return nil
	case v.Kind() == reflect.String:
		if isNull(n) {
			v.SetString("")
			return nil
		}
		if n.Kind != yaml.ScalarNode {
			return nodeErr(n, path, "expected a string, found %s", kindName(n))
		}
		v.SetString(n.Value)
		return nil
	case v.Kind() == reflect.Bool:
		if n.Kind != yaml.ScalarNode || n.Tag != "!!bool" {
			return nodeErr(n, path, "expected true or false, found %q", n.Value)
		}
		b, err := strconv.ParseBool(strings.ToLower(n.Value))
		if err != nil {
			return nodeErr(n, path, "expected true or false, found %q", n.Value)
		}
		v.SetBool(b)
		return nil
	}
	return nodeErr(n, path, "internal error: cannot decode into %s", v.Type())
}

// parseTime accepts RFC 3339 date-times and plain dates (midnight UTC).
func parseTime(s string) (time.Time, error) {
	s = strings.TrimSpace(s)
	if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
		return t.UTC(), nil
	}
	if t, err := time.Parse("2006-01-02", s); err == nil {
		return t, nil
	}
	return time.Time{}, fmt.Errorf("%q is not an RFC 3339 date-time (2026-01-31T00:00:00Z) or a date (2026-01-31)", s)
}

// lineOf finds the line of the node at path ("deny.sha256[3]") in the tree
// rooted at n; when the path is only partly there, the line of the deepest
// node found.
func lineOf(n *yaml.Node, path string) int {
	if n == nil {
		return 0
	}
	if n.Kind == yaml.DocumentNode && len(n.Content) > 0 {
		n = n.Content[0]
	}
	line := n.Line
	for path != "" {
		for n.Kind == yaml.AliasNode {
			n = n.Alias
		}
		if path[0] == '[' {
			end := strings.IndexByte(path, ']')
			if end < 0 {
				return line
			}
			i, err := strconv.Atoi(path[1:end])
			path = strings.TrimPrefix(path[end+1:], ".")
			if err != nil || n.Kind != yaml.SequenceNode || i < 0 || i >= len(n.Content) {
				return line
			}
			n = n.Content[i]
			line = n.Line
			continue
		}
		end := strings.IndexAny(path, ".[")
		if end < 0 {
			end = len(path)
		}
		name := path[:end]
		path = strings.TrimPrefix(path[end:], ".")
		if n.Kind != yaml.MappingNode {
			return line
		}
		found := false
		for i := 0; i+1 < len(n.Content); i += 2 {
			if n.Content[i].Value == name {
				line = n.Content[i+1].Line
				n, found = n.Content[i+1], true
				break
			}
		}
		if !found {
			return line
		}
	}
	return line
}
