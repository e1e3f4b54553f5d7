// Package schemagen derives strict JSON Schemas (draft 2020-12) from Go
// types as encoding/json encodes them, so that published schemas cannot
// drift from the code: tests regenerate and compare them.
package schemagen

import (
	"bytes"
	"encoding/json"
	"fmt"
	"reflect"
	"sort"
	"strings"

	"github.com/santhosh-tekuri/jsonschema/v6"
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

// Document returns the published schema for t: Of(t) with the draft, id,
// title and description, after edit has refined its top-level
// properties, as indented JSON.
func Document(t reflect.Type, id, title, description string, edit func(props map[string]any)) ([]byte, error) {
	s := Of(t)
	s["$schema"] = "https://json-schema.org/draft/2020-12/schema"
	s["$id"] = id
	s["title"] = title
	s["description"] = description
	if edit != nil {
		edit(s["properties"].(map[string]any))
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetIndent("", "  ")
	enc.SetEscapeHTML(false)
	if err := enc.Encode(s); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// Validate checks a JSON document against a schema document.
func Validate(schema, doc []byte) error {
	sd, err := jsonschema.UnmarshalJSON(bytes.NewReader(schema))
	if err != nil {
		return fmt.Errorf("schema: %w", err)
	}
	c := jsonschema.NewCompiler()
	c.DefaultDraft(jsonschema.Draft2020)
	if err := c.AddResource("schema.json", sd); err != nil {
		return err
	}
	sch, err := c.Compile("schema.json")
	if err != nil {
		return fmt.Errorf("schema: %w", err)
	}
	v, err := jsonschema.UnmarshalJSON(bytes.NewReader(doc))
	if err != nil {
		return fmt.Errorf("document: %w", err)
	}
	return sch.Validate(v)
}
