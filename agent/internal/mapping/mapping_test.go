package mapping

import (
	"fmt"
	"maps"
	"strings"
	"sync"
	"testing"

	"go.uber.org/goleak"

	fustorv1 "github.com/fustor/fustor/gen/fustor/v1"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func ptr(s string) *string { return &s }

// TestCasts checks every type on good and bad input: the canonical text, or a failure.
func TestCasts(t *testing.T) {
	tests := []struct {
		typ, in, want string
		fail          bool
	}{
		{"string", " as is ", " as is ", false},
		{"", "x", "x", false},
		{"int", "0042", "42", false},
		{"int", " -7 ", "-7", false},
		{"int", "4.0", "", true},
		{"int", "9223372036854775808", "", true},
		{"uint", "18446744073709551615", "18446744073709551615", false},
		{"uint", "-1", "", true},
		{"float", "1.50", "1.5", false},
		{"float", "1e3", "1000", false},
		{"float", "NaN", "", true},
		{"float", "+Inf", "", true},
		{"float", "abc", "", true},
		{"bool", "TRUE", "true", false},
		{"bool", "1", "true", false},
		{"bool", "yes", "true", false},
		{"bool", "On", "true", false},
		{"bool", "0", "false", false},
		{"bool", "n", "false", false},
		{"bool", "off", "false", false},
		{"bool", "maybe", "", true},
		{"time", "2026-12-03T10:00:00+02:00", "2026-12-03T08:00:00Z", false},
		{"time", "2026-12-03T08:00:00.123456789Z", "2026-12-03T08:00:00.123456789Z", false},
		{"time", "1700000000", "2023-11-14T22:13:20Z", false},
		{"time", "1700000000.5", "2023-11-14T22:13:20.5Z", false},
		{"time", "yesterday", "", true},
		{"time", "1700000000.-5", "", true},
		{"time", "", "", true},
	}
	for _, tt := range tests {
		t.Run(tt.typ+"/"+tt.in, func(t *testing.T) {
			m, err := New(Config{Fields: []Rule{{To: "v", Type: tt.typ}}})
			if err != nil {
				t.Fatal(err)
			}
			row := &fustorv1.GenericRow{Key: "k", Fields: map[string]string{"v": tt.in}}
			dropped, failed := m.Apply(row)
			if dropped || row.Delete {
				t.Fatal("row dropped under drop_field")
			}
			if tt.fail {
				if len(failed) != 1 || !strings.Contains(failed[0].Error(), `field "v"`) || !strings.Contains(failed[0].Error(), `row "k"`) {
					t.Errorf("failures %v, want one naming row k, field v", failed)
				}
				if _, ok := row.Fields["v"]; ok || m.Stats().CastFailures != 1 {
					t.Errorf("failed field kept (%v) or not counted (%+v)", row.Fields, m.Stats())
				}
				return
			}
			if len(failed) != 0 || row.Fields["v"] != tt.want {
				t.Errorf("got %q (failures %v), want %q", row.Fields["v"], failed, tt.want)
			}
		})
	}
}

// TestApply covers the options: pass-through, projection, rename, from defaulting to to,
// constants, defaults, missing fields and both on_cast_error settings, on rows and deletes:
// drop_row turns a row into a delete of its key without fields (so that no consumer keeps its
// older version), and never drops a delete, which loses its fields instead.
func TestApply(t *testing.T) {
	in := map[string]string{"user_id": "0042", "full_name": "Ada", "size": "2.50", "enabled": "yes", "junk": "x", "bad": "NaN"}
	tests := []struct {
		name     string
		cfg      Config
		want     map[string]string // nil: the row's version is dropped
		failures int
	}{
		{name: "empty mapping passes through", cfg: Config{}, want: in},
		{name: "projection, rename and casts", cfg: Config{Fields: []Rule{
			{To: "id", From: "user_id", Type: "int"}, {To: "name", From: "full_name"},
			{To: "size", Type: "float"}, {To: "active", From: "enabled", Type: "bool"},
		}}, want: map[string]string{"id": "42", "name": "Ada", "size": "2.5", "active": "true"}},
		{name: "constant", cfg: Config{Fields: []Rule{{To: "site", Value: ptr("eu-1")}, {To: "version", Value: ptr("07"), Type: "int"}}},
			want: map[string]string{"site": "eu-1", "version": "7"}},
		{name: "missing field left out, default used", cfg: Config{Fields: []Rule{
			{To: "a", From: "absent"}, {To: "b", From: "absent", Default: ptr("1"), Type: "bool"}, {To: "name", From: "full_name"},
		}}, want: map[string]string{"b": "true", "name": "Ada"}},
		{name: "drop_field keeps the row", cfg: Config{Fields: []Rule{{To: "bad", Type: "float"}, {To: "name", From: "full_name"}}},
			want: map[string]string{"name": "Ada"}, failures: 1},
		{name: "drop_row drops it", cfg: Config{OnCastError: OnCastErrorDropRow, Fields: []Rule{{To: "bad", Type: "float"}, {To: "name", From: "full_name"}}},
			failures: 1},
		{name: "drop_row keeps a row that casts", cfg: Config{OnCastError: OnCastErrorDropRow, Fields: []Rule{{To: "id", From: "user_id", Type: "uint"}}},
			want: map[string]string{"id": "42"}},
	}
	for _, tt := range tests {
		for _, del := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s/delete=%v", tt.name, del), func(t *testing.T) {
				m, err := New(tt.cfg)
				if err != nil {
					t.Fatal(err)
				}
				row := &fustorv1.GenericRow{Key: "r1", Fields: maps.Clone(in), Delete: del, Index: 9}
				dropped, failed := m.Apply(row)
				if len(failed) != tt.failures {
					t.Errorf("failures %v, want %d", failed, tt.failures)
				}
				st := m.Stats()
				if st.Rows != 1 || st.CastFailures != uint64(tt.failures) {
					t.Errorf("stats %+v", st)
				}
				if row.Key != "r1" || row.Index != 9 {
					t.Errorf("key or index changed: %v", row)
				}
				switch {
				case tt.want == nil && del:
					if dropped || st.RowsDropped != 0 || !row.Delete || len(row.Fields) != 0 {
						t.Errorf("delete: dropped %v, %v (stats %+v), want a delete kept without fields", dropped, row, st)
					}
				case tt.want == nil:
					if !dropped || st.RowsDropped != 1 || !row.Delete || len(row.Fields) != 0 {
						t.Errorf("dropped %v, %v (stats %+v), want a delete of r1 without fields", dropped, row, st)
					}
				default:
					if dropped || st.RowsDropped != 0 || row.Delete != del || !maps.Equal(row.Fields, tt.want) {
						t.Errorf("dropped %v, delete %v: %v, want %v", dropped, row.Delete, row.Fields, tt.want)
					}
				}
			})
		}
	}
	var nilMap *Mapping
	if dropped, _ := nilMap.Apply(&fustorv1.GenericRow{}); dropped {
		t.Error("a nil mapping drops rows")
	}
}

// TestValidate lists the configuration errors, each reported.
func TestValidate(t *testing.T) {
	tests := []struct {
		name string
		cfg  Config
		want []string
	}{
		{"no target", Config{Fields: []Rule{{From: "a"}}}, []string{"fields[0]: to is required"}},
		{"target twice", Config{Fields: []Rule{{To: "a"}, {To: "a", From: "b"}}}, []string{`fields[1]: target "a" listed twice`}},
		{"unknown type", Config{Fields: []Rule{{To: "a", Type: "decimal"}}}, []string{`unknown type "decimal"`}},
		{"constant and from", Config{Fields: []Rule{{To: "a", From: "b", Value: ptr("1")}}}, []string{"value is a constant"}},
		{"bad constant", Config{Fields: []Rule{{To: "a", Value: ptr("x"), Type: "int"}}}, []string{`value "x" is not a int`}},
		{"bad default", Config{Fields: []Rule{{To: "a", Default: ptr("x"), Type: "bool"}}}, []string{`default "x" is not a bool`}},
		{"bad option", Config{OnCastError: "explode"}, []string{`on_cast_error "explode"`}},
		{"all at once", Config{OnCastError: "x", Fields: []Rule{{}, {To: "b", Type: "?"}}}, []string{"to is required", "unknown type", "on_cast_error"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := New(tt.cfg)
			if err == nil {
				t.Fatal("no error")
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q lacks %q", err, w)
				}
			}
		})
	}
}

// TestConcurrentApply: a mapping is shared by a pipe's goroutines; counters stay exact.
func TestConcurrentApply(t *testing.T) {
	m, err := New(Config{Fields: []Rule{{To: "n", Type: "int"}}})
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Go(func() {
			for i := range 100 {
				v := "1"
				if (g+i)%2 == 0 {
					v = "x"
				}
				m.Apply(&fustorv1.GenericRow{Fields: map[string]string{"n": v}})
			}
		})
	}
	wg.Wait()
	if st := m.Stats(); st.Rows != 400 || st.CastFailures != 200 {
		t.Errorf("stats %+v, want 400 rows and 200 failures", st)
	}
}
