// Package mapping is an agent pipe's fields_mapping (DESIGN.md §7): the projection applied to
// the rows of a generic schema (fustor.v1.GenericRow) before they are sent.
//
// An empty mapping passes rows through unchanged. A non-empty one is a projection: only the
// target fields it lists survive, each taken from a source field (a rename when the names
// differ), or a constant, optionally cast to a type. Fields are text on the wire; a cast checks
// the text and writes it in one canonical form, so every consumer reads the same value:
//
//	string  as is (the default)
//	int     a signed 64-bit integer in base 10 ("0042" → "42"; "4.0" fails)
//	uint    an unsigned 64-bit integer in base 10
//	float   a 64-bit float, shortest form ("1.50" → "1.5"; NaN and ±Inf fail)
//	bool    true/false, also 1/0, t/f, yes/no, y/n, on/off, any case → "true"/"false"
//	time    RFC 3339 (any offset), or Unix seconds (with a fraction) → RFC 3339 UTC, ns precision
//
// A source field the row lacks leaves the target out, unless the rule has a default (which is
// cast like a value). A value that fails its cast never stops anything: it is counted
// (Stats.CastFailures) and reported (the returned error names row key, field and value), and
// the row goes on without that field — or, with OnCastError "drop_row", its version is dropped
// (counted in Stats.RowsDropped): it is sent as a delete of its key, without fields, so that
// no consumer keeps an older version of a row that now fails its mapping. A delete is never
// dropped: under drop_row, one with a failed cast is sent without fields.
package mapping

import (
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	fustorv1 "github.com/fustor/fustor/gen/fustor/v1"
)

// Rule is one target field of a fields_mapping.
type Rule struct {
	// To is the target field's name (required, unique in a mapping).
	To string `koanf:"to"`
	// From is the source field it is read from ("" = To itself, unless Value is set).
	From string `koanf:"from"`
	// Value makes the field a constant: every row gets it, whatever its fields (exclusive with
	// From and Default).
	Value *string `koanf:"value"`
	// Default is used when the row lacks From.
	Default *string `koanf:"default"`
	// Type casts the value: string (default), int, uint, float, bool or time.
	Type string `koanf:"type"`
}

// Options of a mapping.
const (
	// OnCastErrorDropField (the default) sends the row without the field that failed.
	OnCastErrorDropField = "drop_field"
	// OnCastErrorDropRow drops a row with any field that failed.
	OnCastErrorDropRow = "drop_row"
)

// Config is a pipe's fields_mapping.
type Config struct {
	Fields []Rule `koanf:"fields"`
	// OnCastError is what a failed cast costs: OnCastErrorDropField (default) or
	// OnCastErrorDropRow.
	OnCastError string `koanf:"on_cast_error"`
}

type caster func(string) (string, error)

var casters = map[string]caster{
	"":       func(s string) (string, error) { return s, nil },
	"string": func(s string) (string, error) { return s, nil },
	"int": func(s string) (string, error) {
		n, err := strconv.ParseInt(strings.TrimSpace(s), 10, 64)
		return strconv.FormatInt(n, 10), err
	},
	"uint": func(s string) (string, error) {
		n, err := strconv.ParseUint(strings.TrimSpace(s), 10, 64)
		return strconv.FormatUint(n, 10), err
	},
	"float": func(s string) (string, error) {
		f, err := strconv.ParseFloat(strings.TrimSpace(s), 64)
		if err == nil && (math.IsNaN(f) || math.IsInf(f, 0)) {
			err = errors.New("not a finite number")
		}
		return strconv.FormatFloat(f, 'g', -1, 64), err
	},
	"bool": func(s string) (string, error) {
		switch strings.ToLower(strings.TrimSpace(s)) {
		case "true", "1", "t", "yes", "y", "on":
			return "true", nil
		case "false", "0", "f", "no", "n", "off":
			return "false", nil
		}
		return "", errors.New("not a boolean")
	},
	"time": castTime,
}

func castTime(s string) (string, error) {
	s = strings.TrimSpace(s)
	if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
		return t.UTC().Format(time.RFC3339Nano), nil
	}
	sec, frac, _ := strings.Cut(s, ".")
	n, err := strconv.ParseInt(sec, 10, 64)
	if err != nil || sec == "" || strings.ContainsAny(frac, "+-") {
		return "", errors.New("neither RFC 3339 nor Unix seconds")
	}
	var ns int64
	if frac != "" {
		if len(frac) > 9 {
			frac = frac[:9]
		}
		f, err := strconv.ParseUint(frac+strings.Repeat("0", 9-len(frac)), 10, 64)
		if err != nil {
			return "", errors.New("neither RFC 3339 nor Unix seconds")
		}
		ns = int64(f)
		if strings.HasPrefix(sec, "-") {
			ns = -ns
		}
	}
	return time.Unix(n, ns).UTC().Format(time.RFC3339Nano), nil
}

// Validate reports every bad rule at once.
func (c Config) Validate() error {
	var errs []error
	seen := map[string]bool{}
	for i, r := range c.Fields {
		at := fmt.Sprintf("fields[%d]", i)
		if r.To == "" {
			errs = append(errs, fmt.Errorf("%s: to is required", at))
		} else if seen[r.To] {
			errs = append(errs, fmt.Errorf("%s: target %q listed twice", at, r.To))
		}
		seen[r.To] = true
		if _, ok := casters[r.Type]; !ok {
			errs = append(errs, fmt.Errorf("%s: unknown type %q (want string, int, uint, float, bool or time)", at, r.Type))
			continue
		}
		if r.Value != nil && (r.From != "" || r.Default != nil) {
			errs = append(errs, fmt.Errorf("%s: value is a constant: set from and default, or value", at))
		}
		for what, v := range map[string]*string{"value": r.Value, "default": r.Default} {
			if v == nil {
				continue
			}
			if _, err := casters[r.Type](*v); err != nil {
				errs = append(errs, fmt.Errorf("%s: %s %q is not a %s: %w", at, what, *v, r.Type, err))
			}
		}
	}
	if c.OnCastError != "" && c.OnCastError != OnCastErrorDropField && c.OnCastError != OnCastErrorDropRow {
		errs = append(errs, fmt.Errorf("on_cast_error %q: want %s or %s", c.OnCastError, OnCastErrorDropField, OnCastErrorDropRow))
	}
	return errors.Join(errs...)
}

// Stats are a mapping's counters since it was built.
type Stats struct {
	Rows, RowsDropped, CastFailures uint64
}

// rule is a compiled Rule.
type rule struct {
	to, from string
	constant *string // already cast
	def      *string // already cast
	cast     caster
	typ      string
}

// Mapping is a compiled Config, safe for concurrent use.
type Mapping struct {
	rules   []rule
	dropRow bool

	rows, dropped, failures atomic.Uint64
}

// New compiles c.
func New(c Config) (*Mapping, error) {
	if err := c.Validate(); err != nil {
		return nil, fmt.Errorf("validate fields_mapping: %w", err)
	}
	m := &Mapping{dropRow: c.OnCastError == OnCastErrorDropRow}
	for _, r := range c.Fields {
		cr := rule{to: r.To, from: r.From, cast: casters[r.Type], typ: cmpOr(r.Type, "string")}
		if cr.from == "" {
			cr.from = r.To
		}
		if r.Value != nil {
			v, _ := cr.cast(*r.Value)
			cr.constant = &v
		}
		if r.Default != nil {
			v, _ := cr.cast(*r.Default)
			cr.def = &v
		}
		m.rules = append(m.rules, cr)
	}
	return m, nil
}

func cmpOr(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

// CastError is one value that failed its cast.
type CastError struct {
	Key, Field, Value, Type string
	Err                     error
}

func (e *CastError) Error() string {
	return fmt.Sprintf("row %q: field %q: value %q is not a %s: %v", e.Key, e.Field, e.Value, e.Type, e.Err)
}

// Apply maps one row in place and returns the cast failures it met (each one counted), and
// whether the row's version was dropped (a failed cast under drop_row): the row is then a
// delete of its key without fields, to be sent like any row. A delete keeps its key and is
// mapped like any row, but never dropped: under drop_row it loses its fields instead.
func (m *Mapping) Apply(row *fustorv1.GenericRow) (dropped bool, failed []*CastError) {
	if m == nil {
		return false, nil
	}
	m.rows.Add(1)
	if len(m.rules) == 0 {
		return false, nil
	}
	in := row.GetFields()
	out := make(map[string]string, len(m.rules))
	for _, r := range m.rules {
		if r.constant != nil {
			out[r.to] = *r.constant
			continue
		}
		v, ok := in[r.from]
		if !ok {
			if r.def != nil {
				out[r.to] = *r.def
			}
			continue
		}
		cv, err := r.cast(v)
		if err != nil {
			m.failures.Add(1)
			failed = append(failed, &CastError{Key: row.GetKey(), Field: r.from, Value: v, Type: r.typ, Err: err})
			continue
		}
		out[r.to] = cv
	}
	if len(failed) > 0 && m.dropRow {
		row.Fields = nil
		if row.GetDelete() {
			return false, failed
		}
		m.dropped.Add(1)
		row.Delete = true
		return true, failed
	}
	row.Fields = out
	return false, failed
}

// Stats returns the mapping's counters (zero for a nil mapping, which maps nothing).
func (m *Mapping) Stats() Stats {
	if m == nil {
		return Stats{}
	}
	return Stats{Rows: m.rows.Load(), RowsDropped: m.dropped.Load(), CastFailures: m.failures.Load()}
}
