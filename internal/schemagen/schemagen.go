// Package schemagen derives strict JSON Schemas (draft 2020-12) from Go
// types as encoding/json encodes them, so that published schemas cannot
// drift from the code: tests regenerate and compare them.
package schemagen

import (
	"reflect"
	"sort"
	"strings"
)

// Of derives a strict JSON Schema from a Go type's JSON encoding:
// every field that is not omitempty is required, no other member is
// allowed, pointers may be null.
func Of(t reflect.Type) map[string]any {
	switch t.Kind() {
	case reflect.Pointer:
		s := Of(t.Elem())
		if ty, ok := s["type"].(string); ok {
			s["type"] = []any{ty, "null"}
		}
		return s
	case reflect.Struct:
		props := map[string]any{}
		var required []string
		var walk func(t reflect.Type)
		walk = func(t reflect.Type) {
			for i := 0; i < t.NumField(); i++ {
				f := t.Field(i)
				if f.Anonymous {
					walk(f.Type)
					continue
				}
				if !f.IsExported() {
					continue
				}
				name, opts, _ := strings.Cut(f.Tag.Get("json"), ",")
				if name == "-" {
					continue
				}
				if name == "" {
					name = f.Name
				}
				props[name] = Of(f.Type)
				if !strings.Contains(opts, "omitempty") {
					required = append(required, name)
				}
			}
		}
		walk(t)
		sort.Strings(required)
		if required == nil {
			required = []string{}
		}
		return map[string]any{"type": "object", "properties": props, "required": required, "additionalProperties": false}
	case reflect.Slice:
		if t.Elem().Kind() == reflect.Uint8 {
			return map[string]any{"type": "string", "contentEncoding": "base64"}
		}
		return map[string]any{"type": "array", "items": Of(t.Elem())}
	case reflect.Map:
		return map[string]any{"type": "object", "additionalProperties": Of(t.Elem())}
	case reflect.String:
		return map[string]any{"type": "string"}
	case reflect.Bool:
		return map[string]any{"type": "boolean"}
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return map[string]any{"type": "integer"}
	case reflect.Interface:
		return map[string]any{}
	}
	panic("schema: unsupported kind " + t.Kind().String())
}
