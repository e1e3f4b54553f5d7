// Package report is the runtime report's format: its types (the claim
// sections a measure.Measurer fills), the closed vocabularies of its
// claims, its canonical encoder (Report.Canonical, RFC 8785) and its strict
// decoder (ParseReport). It links no collector and no code-integrity
// engine, so that the evidence verifier and relying parties that read a
// report do not pull them (internal/layers holds that).
package report

import "reflect"

// Version is the report format version. Claim names are stable within it.
const Version = "vigil.report.v1"

// MediaType is the report's media type.
const MediaType = "application/vnd.vigil.report.v1+json"

// Status of one section of the report.
type Status string

const (
	// StatusOK means the section was measured.
	StatusOK Status = "ok"
	// StatusUnavailable means the host does not expose what the section
	// reads (no TPM event log, no efivars, IMA off): a fact, not a fault.
	StatusUnavailable Status = "unavailable"
	// StatusError means the inputs exist but could not be read or parsed;
	// Error says why.
	StatusError Status = "error"
)

// Section is embedded in every claim section.
type Section struct {
	Status Status `json:"status"`
	Error  string `json:"error,omitempty"`
}

// Report is the runtime report. Field names are the claim names.
type Report struct {
	Version string `json:"version"`
	// CodePolicy is the digest of the code-integrity policy modules and
	// boot files were judged under ("" when they were not judged).
	CodePolicy string `json:"code_policy,omitempty"`

	Kernel       Kernel       `json:"kernel"`
	Modules      Modules      `json:"modules"`
	Taint        Taint        `json:"taint"`
	Enforcement  Enforcement  `json:"enforcement"`
	Debug        Debug        `json:"debug"`
	SecureBoot   SecureBoot   `json:"secure_boot"`
	MeasuredBoot MeasuredBoot `json:"measured_boot"`
	IMA          IMA          `json:"ima"`
	Processes    Processes    `json:"processes"`
	Revocations  Revocations  `json:"revocations"`
	Keyrings     Keyrings     `json:"keyrings"`

	// Inputs holds the SHA-256 of every file read, by host path.
	Inputs map[string]string `json:"inputs"`
}

// Sections returns each section by claim name, for callers that treat
// them uniformly (text output, tests).
func (r *Report) Sections() map[string]*Section {
	return map[string]*Section{
		"kernel":        &r.Kernel.Section,
		"modules":       &r.Modules.Section,
		"taint":         &r.Taint.Section,
		"enforcement":   &r.Enforcement.Section,
		"debug":         &r.Debug.Section,
		"secure_boot":   &r.SecureBoot.Section,
		"measured_boot": &r.MeasuredBoot.Section,
		"ima":           &r.IMA.Section,
		"processes":     &r.Processes.Section,
		"revocations":   &r.Revocations.Section,
		"keyrings":      &r.Keyrings.Section,
	}
}

// NewReport returns the report of a host that exposes nothing: every
// section unavailable, every list and map empty. It is a valid report
// (ParseReport accepts its canonical form), for callers that build one
// by hand.
func NewReport() *Report {
	r := &Report{Version: Version}
	for _, s := range r.Sections() {
		s.Status = StatusUnavailable
	}
	fillEmpty(reflect.ValueOf(r).Elem())
	return r
}

// FillEmpty gives r the form ParseReport accepts for what it does not
// say: every nil list and map empty, every closed claim left "" the value
// its vocabulary gives an unset claim (see fillEmpty). A collector that
// left one nil, or a section a panic cut short, still gives a valid
// report.
func (r *Report) FillEmpty() { fillEmpty(reflect.ValueOf(r).Elem()) }

// fillEmpty replaces every nil slice and map of v (and of the structs,
// pointed-to structs, slices and maps it holds) by an empty one, and
// every closed claim left "" by the value its vocabulary gives an unset
// claim (a section's status: error; lockdown, selinux, apparmor and a
// module's signature: unknown): a report writes [] and {} for none,
// never null, which only a pointer claim may be, and never a value
// outside a vocabulary.
func fillEmpty(v reflect.Value) {
	switch v.Kind() {
	case reflect.Pointer:
		if !v.IsNil() {
			fillEmpty(v.Elem())
		}
	case reflect.Struct:
		for _, f := range fieldsOf(v.Type()) {
			fv := v.FieldByIndex(f.index)
			if f.vocab != nil && f.vocab.unset != "" && fv.Kind() == reflect.String && fv.String() == "" {
				fv.SetString(f.vocab.unset)
			}
			fillEmpty(fv)
		}
	case reflect.Slice:
		if v.IsNil() {
			v.Set(reflect.MakeSlice(v.Type(), 0, 0))
			return
		}
		if k := v.Type().Elem().Kind(); k == reflect.Struct || k == reflect.Pointer || k == reflect.Slice || k == reflect.Map {
			for i := 0; i < v.Len(); i++ {
				fillEmpty(v.Index(i))
			}
		}
	case reflect.Map:
		if v.IsNil() {
			v.Set(reflect.MakeMap(v.Type()))
			return
		}
		if k := v.Type().Elem().Kind(); k == reflect.Struct || k == reflect.Pointer || k == reflect.Slice || k == reflect.Map {
			iter := v.MapRange()
			for iter.Next() {
				e := reflect.New(v.Type().Elem()).Elem()
				e.Set(iter.Value())
				fillEmpty(e)
				v.SetMapIndex(iter.Key(), e)
			}
		}
	}
}
