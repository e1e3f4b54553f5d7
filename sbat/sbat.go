// Package sbat reads UEFI Secure Boot Advanced Targeting data exactly as
// shim does (rhboot/shim csv.c parse_csv_data, sbat.c parse_sbat_section,
// parse_sbat_var_data and verify_single_entry): the .sbat section of a
// boot image, which names each component and its generation, and shim's
// SbatLevel variable, which names the lowest generation of each
// component that may still run. A component whose generation is below
// its level is revoked: shim refuses the image.
//
// Where shim's reading is lenient in ways another reader would not share
// (a generation that is not a plain decimal, which shim's atoi reads as
// its digits or as 0, then truncates to 16 bits), the image is refused as
// malformed rather than read one way.
package sbat

import (
	"bytes"
	"errors"
	"fmt"
	"strconv"
)

// SectionName is the PE section that holds an image's SBAT data.
const SectionName = ".sbat"

// MaxSize bounds the data this package reads (a real .sbat section is a
// few hundred bytes; SbatLevel a few dozen).
const MaxSize = 64 << 10

// Errors, wrapped by every parse error.
var (
	// ErrMalformed: shim would refuse the data (a row with fewer columns
	// than it requires, an empty column), or would read it in a way
	// another reader would not share (a generation that is not a plain
	// decimal of at most 65535).
	ErrMalformed = errors.New("sbat: malformed")
	// ErrTooLarge: more than MaxSize bytes.
	ErrTooLarge = errors.New("sbat: too large")
)

// Entry is one row of a .sbat section.
type Entry struct {
	Component  string
	Generation uint16
	Vendor     string
	Package    string
	Version    string
	URL        string
}

// sectionColumns is SBAT_SECTION_COLUMNS; varColumns SBAT_VAR_COLUMNS
// and varRequired SBAT_VAR_REQUIRED_COLUMNS.
const (
	sectionColumns = 6
	varColumns     = 3
	varRequired    = 2
)

// ParseSection reads a .sbat section: every row must have the six
// columns, none empty.
func ParseSection(b []byte) ([]Entry, error) {
	rows, err := csvRows(b, sectionColumns)
	if err != nil {
		return nil, err
	}
	out := make([]Entry, 0, len(rows))
	for i, r := range rows {
		if len(r) < sectionColumns {
			return nil, fmt.Errorf("%w: row %d has %d columns, shim requires %d", ErrMalformed, i+1, len(r), sectionColumns)
		}
		g, err := generation(r[1])
		if err != nil {
			return nil, fmt.Errorf("row %d (%s): %w", i+1, r[0], err)
		}
		out = append(out, Entry{Component: r[0], Generation: g, Vendor: r[2], Package: r[3], Version: r[4], URL: r[5]})
	}
	return out, nil
}

// Level is an SbatLevel: the lowest generation of each component that
// may run, and the "sbat" row's datestamp that names the level.
type Level struct {
	// Datestamp is the third column of the "sbat" row ("2022052400"),
	// "" when absent.
	Datestamp string
	// Minimum is component → lowest generation allowed, in row order
	// (Components).
	Minimum    map[string]uint16
	Components []string
}

// ParseLevel reads SbatLevel text ("sbat,1,2022052400\ngrub,2\n"). Rows
// need a component and a generation. Shim compares an image's rows with
// every level row, so a component listed twice is held to the higher
// generation.
func ParseLevel(b []byte) (*Level, error) {
	rows, err := csvRows(b, varColumns)
	if err != nil {
		return nil, err
	}
	l := &Level{Minimum: map[string]uint16{}}
	for i, r := range rows {
		if len(r) < varRequired {
			return nil, fmt.Errorf("%w: level row %d has %d columns, shim requires %d", ErrMalformed, i+1, len(r), varRequired)
		}
		g, err := generation(r[1])
		if err != nil {
			return nil, fmt.Errorf("level row %d (%s): %w", i+1, r[0], err)
		}
		if r[0] == "sbat" && len(r) > 2 && l.Datestamp == "" {
			l.Datestamp = r[2]
		}
		if cur, ok := l.Minimum[r[0]]; !ok || g > cur {
			if !ok {
				l.Components = append(l.Components, r[0])
			}
			l.Minimum[r[0]] = g
		}
	}
	return l, nil
}

// Revoked returns the entries of an image whose generation is below the
// level's for their component (verify_single_entry: strcmp on the name,
// sbat_gen < sbat_var_gen). A nil level revokes nothing (shim: "variable
// not present").
func (l *Level) Revoked(entries []Entry) []Entry {
	if l == nil {
		return nil
	}
	var out []Entry
	for _, e := range entries {
		if min, ok := l.Minimum[e.Component]; ok && e.Generation < min {
			out = append(out, e)
		}
	}
	return out
}

// generation reads a generation as shim's atoi does, and refuses what a
// reader could take otherwise: only 1 to 5 decimal digits, at most 65535.
func generation(s string) (uint16, error) {
	if len(s) == 0 || len(s) > 5 {
		return 0, fmt.Errorf("%w: generation %.20q is not a decimal of at most 65535", ErrMalformed, s)
	}
	for _, c := range []byte(s) {
		if c < '0' || c > '9' {
			return 0, fmt.Errorf("%w: generation %.20q is not a decimal (shim's atoi would read it as its leading digits)", ErrMalformed, s)
		}
	}
	n, err := strconv.ParseUint(s, 10, 16)
	if err != nil {
		return 0, fmt.Errorf("%w: generation %q exceeds 65535 (shim keeps its low 16 bits)", ErrMalformed, s)
	}
	return uint16(n), nil
}

var utf8BOM = []byte{0xef, 0xbb, 0xbf}

// csvRows splits data as shim's parse_csv_data does: an optional UTF-8
// BOM; lines ended by CR or LF, empty lines skipped; the data ends at its
// first NUL; each line split at commas into at most max columns (what
// follows the max-th comma is not read). Columns must not be empty (both
// parsers refuse an empty column).
func csvRows(b []byte, max int) ([][]string, error) {
	if len(b) > MaxSize {
		return nil, fmt.Errorf("%w: %d bytes", ErrTooLarge, len(b))
	}
	if i := bytes.IndexByte(b, 0); i >= 0 {
		b = b[:i]
	}
	b = bytes.TrimPrefix(b, utf8BOM)
	var rows [][]string
	for len(b) > 0 {
		end := bytes.IndexAny(b, "\r\n")
		line := b
		if end >= 0 {
			line, b = b[:end], b[end+1:]
		} else {
			b = nil
		}
		if len(line) == 0 {
			continue
		}
		cols := bytes.SplitN(line, []byte(","), max+1)
		if len(cols) > max {
			cols = cols[:max]
		}
		row := make([]string, 0, len(cols))
		for j, c := range cols {
			if len(c) == 0 {
				return nil, fmt.Errorf("%w: row %d column %d is empty", ErrMalformed, len(rows)+1, j+1)
			}
			row = append(row, string(c))
		}
		rows = append(rows, row)
	}
	return rows, nil
}
